"""The Redis side of the batch item budget (sync/batch.py): calls counted per API key and second
across invoker replicas. Redis trouble never fails a batch: the budget lets it through (fails
open, as the concurrency slots do) and says so in the log, at most once every 10 s."""

from __future__ import annotations

import asyncio
import logging
import time

import redis.asyncio as aioredis
import redis.exceptions

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 0.5

# KEYS[1]: the key's counter for this second. ARGV[1]: calls to add. Returns the second's total.
_ADD = """
local total = redis.call('INCRBY', KEYS[1], ARGV[1])
if total == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], 2) end
return total
"""


class RedisItemBudget:
    def __init__(self, url: str) -> None:
        self._redis = aioredis.from_url(
            url, socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S
        )
        self._add = self._redis.register_script(_ADD)
        self._warned_at = 0.0

    async def add(self, key_id: str, second: int, calls: int) -> int:
        """Counts `calls` for the key in that second; returns the second's total (0 if unknown)."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return int(await self._add(keys=[f"nimbus:batch:{key_id}:{second}"], args=[calls]))
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            if time.monotonic() - self._warned_at > 10:
                self._warned_at = time.monotonic()
                log.warning(
                    "redis unavailable; batch calls are not counted against the key's rate",
                    extra={"fields": {"error": str(err) or type(err).__name__}},
                )
            return 0

    async def close(self) -> None:
        await self._redis.aclose()
