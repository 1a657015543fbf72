"""The Redis side of the concurrency limiter. Redis trouble never fails a call: the limiter
lets it through (fails open) and says so in the log, at most once every 10 s."""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
import redis.exceptions
from nimbus.invoker.sync.limits import TAKE_SLOTS

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 0.5


class RedisSlots:
    def __init__(self, url: str) -> None:
        self._redis = aioredis.from_url(
            url, socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S
        )
        self._script = self._redis.register_script(TAKE_SLOTS)
        self._warned_at = 0.0

    async def take(
        self, keys: tuple[str, str], now: float, expiry: float, token: str, limits: tuple[int, int]
    ) -> int:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return int(
                    await self._script(
                        keys=list(keys), args=[now, expiry, token, limits[0], limits[1]]
                    )
                )
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            self._warn(err)
            return 0

    async def give_back(self, keys: tuple[str, str], token: str) -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.zrem(key, token)
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            self._warn(err)  # the slot lapses at its deadline

    def _warn(self, err: BaseException) -> None:
        if time.monotonic() - self._warned_at > 10:
            self._warned_at = time.monotonic()
            log.warning(
                "redis unavailable; concurrency limits are not enforced meanwhile",
                extra={"fields": {"error": str(err) or type(err).__name__}},
            )

    async def close(self) -> None:
        await self._redis.aclose()
