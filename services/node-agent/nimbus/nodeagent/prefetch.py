"""Pre-fetch: code is downloaded and unpacked when a function is created, updated or published,
so the first call's cold start does not wait for the download.

Only changes after start are fetched: a node that starts does not pull every package of the
cluster, only what it is asked to run and what changes from then on.
"""

from __future__ import annotations

import asyncio
import json
import logging

from nimbus.common import keys
from nimbus.common.errors import NimbusError
from nimbus.common.etcd import KV, Etcd, WatchCache
from nimbus.common.logs import kv
from nimbus.nodeagent.codecache import CodeCache

log = logging.getLogger(__name__)

QUEUE_LIMIT = 256
WORKERS = 2


def _code_of(record: KV) -> str:
    return str(json.loads(record.value).get("code_sha256", ""))


class Prefetcher:
    def __init__(self, etcd: Etcd, code: CodeCache) -> None:
        self._code = code
        self._caches = [
            WatchCache(etcd, keys.functions_prefix(), _code_of),
            WatchCache(etcd, keys.versions_prefix(), _code_of),
        ]
        self._queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_LIMIT)
        self._started = False
        for cache in self._caches:
            cache.listeners.append(self._on_change)

    def _on_change(self, _key: bytes, sha256: str | None) -> None:
        if not self._started or not sha256 or sha256 in self._code.usage():
            return
        try:
            self._queue.put_nowait(sha256)
        except asyncio.QueueFull:
            log.warning(
                "prefetch queue full; the code will be fetched on first use",
                extra=kv(code_sha256=sha256),
            )

    async def _work(self) -> None:
        while True:
            sha256 = await self._queue.get()
            try:
                async with asyncio.timeout(120):
                    await self._code.ensure(sha256)
            except (NimbusError, TimeoutError, OSError) as err:
                log.warning(
                    "prefetch failed; the code will be fetched on first use",
                    extra=kv(code_sha256=sha256, error=str(err)),
                )

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for cache in self._caches:
                group.create_task(cache.run())
            for cache in self._caches:
                await cache.wait_ready(3600)
            self._started = True
            for _ in range(WORKERS):
                group.create_task(self._work())
