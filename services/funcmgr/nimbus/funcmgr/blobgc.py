"""Garbage collection of code blobs no function or version refers to any more."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping

from nimbus.common import keys
from nimbus.common.clock import Clock
from nimbus.common.etcd import Etcd
from nimbus.common.loops import loop_run
from nimbus.funcmgr.stores.blobs import BlobStore

log = logging.getLogger(__name__)


def collectable(
    blobs: Mapping[str, float], referenced: Iterable[str], now: float, grace_s: float
) -> list[str]:
    """Unreferenced blobs older than the grace period. The grace covers an upload whose record is
    not written yet (the blob is stored first, then the record that names it)."""
    keep = set(referenced)
    return sorted(sha for sha, mtime in blobs.items() if sha not in keep and now - mtime > grace_s)


class BlobCollector:
    def __init__(
        self, etcd: Etcd, blobs: BlobStore, clock: Clock, period_s: float, grace_s: float
    ) -> None:
        self._etcd = etcd
        self._blobs = blobs
        self._clock = clock
        self._period_s = period_s
        self._grace_s = grace_s

    async def referenced(self) -> set[str]:
        found: set[str] = set()
        for prefix in (keys.functions_prefix(), keys.versions_prefix()):
            kvs, _ = await self._etcd.get_prefix(prefix)
            found.update(json.loads(kv.value)["code_sha256"] for kv in kvs)
        return found

    async def collect_once(self) -> list[str]:
        # Blobs are listed before the records are read: a blob stored after the listing is not
        # a candidate, and one referenced before the read is kept.
        blobs = await asyncio.to_thread(self._blobs.list_blobs)
        referenced = await self.referenced()
        doomed = collectable(blobs, referenced, self._clock.now(), self._grace_s)
        for sha in doomed:
            await asyncio.to_thread(self._blobs.delete, sha)
        if doomed:
            log.info("collected code blobs", extra={"fields": {"count": len(doomed)}})
        return doomed

    async def run(self) -> None:
        while True:
            await self._clock.sleep(self._period_s)
            try:
                with loop_run("blob_gc"):
                    await self.collect_once()
            except Exception:
                log.exception("blob collection failed; retrying next period")
