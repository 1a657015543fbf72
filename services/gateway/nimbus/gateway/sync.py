"""The reconcile loop of the gateway's control plane: registry and rollouts (etcd watches) in,
xDS files out. It never dies: a failed pass is logged and retried on the next change or tick."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

from nimbus.common.clock import Clock
from nimbus.common.loops import loop_run
from nimbus.common.registry import Rollout, ServiceEndpoint
from nimbus.gateway import xds

log = logging.getLogger(__name__)

T = TypeVar("T")


class Watched(Protocol[T]):
    """The read side of an etcd WatchCache."""

    @property
    def items(self) -> Mapping[bytes, T]: ...

    @property
    def listeners(self) -> list[Callable[[bytes, T | None], None]]: ...

    async def wait_ready(self, timeout_s: float) -> None: ...


class FileSink(Protocol):
    def write(self, files: Mapping[str, bytes]) -> list[str]: ...


class GatewaySync:
    def __init__(
        self,
        endpoints: Watched[ServiceEndpoint],
        rollouts: Watched[Rollout],
        sink: FileSink,
        clock: Clock,
        *,
        debounce_s: float = 0.02,
        resync_s: float = 5.0,
    ) -> None:
        self._endpoints = endpoints
        self._rollouts = rollouts
        self._sink = sink
        self._clock = clock
        self._debounce_s = debounce_s
        self._resync_s = resync_s
        self._changed = asyncio.Event()
        self.synced = asyncio.Event()
        self.last_success = 0.0
        for cache in (endpoints, rollouts):
            cache.listeners.append(lambda key, value: self._changed.set())

    def snapshot(self) -> xds.Snapshot:
        records = [r for r in self._endpoints.items.values() if isinstance(r, ServiceEndpoint)]
        rollouts = {r.service: r for r in self._rollouts.items.values() if isinstance(r, Rollout)}
        return xds.build(records, rollouts)

    def sync_once(self) -> list[str]:
        started = time.perf_counter()
        snapshot = self.snapshot()
        written = self._sink.write(xds.files(snapshot))
        self.last_success = self._clock.now()
        if written:
            log.info(
                "xds updated",
                extra={
                    "fields": {
                        "files": written,
                        "endpoints": {
                            c: [e.replica for e in eps]
                            for c, eps in snapshot.endpoints.items()
                            if eps
                        },
                        "took_ms": round((time.perf_counter() - started) * 1000, 2),
                    }
                },
            )
        return written

    async def run(self) -> None:
        for cache in (self._endpoints, self._rollouts):
            while True:
                try:
                    await cache.wait_ready(10)
                    break
                except TimeoutError:
                    log.warning("registry not readable yet; keeping the last xds files")
        while True:
            self._changed.clear()
            try:
                with loop_run("xds_sync"):
                    self.sync_once()
                self.synced.set()
            except Exception:
                log.exception("xds sync failed; retrying")
            try:
                async with asyncio.timeout(self._resync_s):
                    await self._changed.wait()
            except TimeoutError:
                pass
            # Coalesce a burst of changes (a replica's lease and record land together).
            await self._clock.sleep(self._debounce_s)
