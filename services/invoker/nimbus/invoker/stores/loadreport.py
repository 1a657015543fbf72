"""Publishes this invoker's load to etcd under its own lease, so a dead replica's load vanishes
with it. The scheduler watches the prefix."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from nimbus.common import keys
from nimbus.common.clock import Clock
from nimbus.common.errors import Unavailable
from nimbus.common.etcd import Etcd
from nimbus.common.model import LoadReport
from nimbus.invoker.sync.load import LoadMeter
from nimbus.invoker.sync.pool import Pool, PoolKey

log = logging.getLogger(__name__)

LEASE_TTL_S = 5


class LoadReporter:
    def __init__(
        self,
        etcd: Etcd,
        replica: str,
        meter: LoadMeter,
        pools: Callable[[], Mapping[PoolKey, Pool]],
        clock: Clock,
        period_s: float = 1.0,
        samples_per_period: int = 10,
    ) -> None:
        self._etcd = etcd
        self._replica = replica
        self._meter = meter
        self._pools = pools
        self._clock = clock
        self._period_s = period_s
        self._samples = samples_per_period
        self._lease = 0
        self._last_sent: dict[str, float] | None = None

    async def run(self) -> None:
        while True:
            for _ in range(self._samples):
                await self._clock.sleep(self._period_s / self._samples)
                self._meter.sample(self._pools())
            averages = self._meter.drain()
            # An idle replica writes once, then stays quiet until it has load again.
            if not averages and self._last_sent == {}:
                await self._keepalive()
                continue
            try:
                await self._publish(averages)
                self._last_sent = averages
            except Unavailable as err:
                log.warning("load report not sent", extra={"fields": {"error": err.message}})
                self._lease = 0

    async def _keepalive(self) -> None:
        try:
            if self._lease and await self._etcd.refresh_lease(self._lease) <= 0:
                self._lease, self._last_sent = 0, None
        except Unavailable:
            self._lease, self._last_sent = 0, None

    async def _publish(self, averages: dict[str, float]) -> None:
        if not self._lease:
            self._lease = await self._etcd.grant_lease(LEASE_TTL_S)
        else:
            await self._keepalive()
            if not self._lease:
                self._lease = await self._etcd.grant_lease(LEASE_TTL_S)
        report = LoadReport(self._replica, self._period_s, averages, self._clock.now())
        await self._etcd.put(keys.load_report(self._replica), report.to_json(), lease=self._lease)

    async def close(self) -> None:
        if self._lease:
            try:
                async with asyncio.timeout(2):
                    await self._etcd.revoke_lease(self._lease)
            except (Unavailable, TimeoutError):
                pass
