"""Counts throttled calls into their function's per-minute metrics (nimbus.common.fnmetrics).

A throttle answer never waits on Redis: `record` only adds to a counter in memory, and a background
task adds the counters to Redis about once a second, in one transaction per flush. Counts Redis
refused are kept and tried again until their minute's metrics expire.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

import redis.asyncio as aioredis
import redis.exceptions
from nimbus.common import fnmetrics as fm
from nimbus.common.clock import Clock

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 2.0
FLUSH_EVERY_S = 1.0


class ThrottleRecorder:
    def __init__(self, url: str, clock: Clock) -> None:
        self._redis = aioredis.from_url(
            url, socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S
        )
        self._clock = clock
        self._pending: Counter[tuple[str, str, int]] = Counter()
        self._wake = asyncio.Event()
        self._warned_at = 0.0

    def record(self, namespace: str, function: str) -> None:
        self._pending[(namespace, function, fm.minute_start(self._clock.now()))] += 1
        self._wake.set()

    async def run(self) -> None:
        """Background task: flushes what was recorded, at most once per FLUSH_EVERY_S."""
        while True:
            await self._wake.wait()
            await self._clock.sleep(FLUSH_EVERY_S)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        batch, self._pending = self._pending, Counter()
        if not batch:
            return
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                pipe = self._redis.pipeline(transaction=True)
                for (namespace, function, minute), count in batch.items():
                    key = fm.minute_key(namespace, function, minute)
                    pipe.hincrby(key, fm.THROTTLES, count)
                    pipe.expireat(key, fm.expire_at(minute))
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            now = self._clock.now()
            self._pending.update({k: n for k, n in batch.items() if fm.expire_at(k[2]) > now})
            self._wake.set()
            self._warn(err)

    def _warn(self, err: BaseException) -> None:
        if self._clock.monotonic() - self._warned_at > 10:
            self._warned_at = self._clock.monotonic()
            log.warning(
                "redis unavailable; throttle counts kept for later",
                extra={"fields": {"error": str(err) or type(err).__name__}},
            )

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            await self._redis.aclose()
