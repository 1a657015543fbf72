"""Invocation records in Redis: one hash per invocation id with a TTL, written by Lua scripts that
apply the ordering rule of records.py atomically. Every failure surfaces as Unavailable.

redis.asyncio reconnects per command; each call gets a deadline, so a lost Redis costs a bounded
wait and a 503 (or a requeued event), never a hung or crashed invoker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from nimbus.common.clock import iso
from nimbus.common.errors import Unavailable
from nimbus.invoker.records import (
    EventRef,
    InvocationRecord,
    InvocationStatus,
    Move,
    MoveResult,
    allowed_from,
)

CALL_TIMEOUT_S = 2.0
PREFIX = "nimbus:inv:"

# KEYS[1] the record. ARGV: mode (create|move), seq, status, allowed-from (comma list), attempts
# delta, ttl, then field/value pairs. A newer seq starts the record afresh; an older one is
# dropped; in "create" mode an existing record of the same seq is left alone; in "move" mode the
# current status must be in allowed-from. Returns {applied 0|1, status, attempts}.
_MOVE = """
local cur = redis.call('HMGET', KEYS[1], 'seq', 'status', 'attempts')
local seq = tonumber(ARGV[2])
local cseq = tonumber(cur[1])
local fresh = (cseq == nil) or (seq > cseq)
if not fresh then
  if ARGV[1] == 'create' or seq < cseq then
    return {0, cur[2] or '', tonumber(cur[3]) or 0}
  end
  local ok = false
  for s in string.gmatch(ARGV[4], '[^,]+') do
    if s == cur[2] then ok = true end
  end
  if not ok then
    return {0, cur[2] or '', tonumber(cur[3]) or 0}
  end
else
  redis.call('DEL', KEYS[1])
end
redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'status', ARGV[3], unpack(ARGV, 7))
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', tonumber(ARGV[5]))
if attempts < 0 then
  redis.call('HSET', KEYS[1], 'attempts', 0)
  attempts = 0
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, ARGV[3], attempts}
"""


def record_key(invocation_id: str) -> str:
    return PREFIX + invocation_id


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


class RedisRecords:
    def __init__(self, url: str, ttl_s: int) -> None:
        self._redis = aioredis.from_url(
            url,
            socket_timeout=CALL_TIMEOUT_S,
            socket_connect_timeout=CALL_TIMEOUT_S,
            health_check_interval=15,
            max_connections=256,
        )
        self._ttl_s = ttl_s
        self._script = self._redis.register_script(_MOVE)

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def _call(self, coro: Any) -> Any:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await coro
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            raise Unavailable(f"redis unavailable: {type(err).__name__}: {err}") from err

    @staticmethod
    def _base(ref: EventRef, now: float) -> list[str]:
        return [
            "id", ref.invocation_id,
            "namespace", ref.namespace,
            "function", ref.function,
            "qualifier", ref.qualifier,
            "created_at", iso(ref.submitted_at),
            "updated_at", iso(now),
        ]

    async def create(self, ref: EventRef, now: float) -> bool:
        """The QUEUED record of a just-stored event; leaves a record of the same event alone."""
        args = ["create", str(ref.seq), InvocationStatus.QUEUED.value, "", "0", str(self._ttl_s), *self._base(ref, now)]
        res = await self._call(self._script(keys=[record_key(ref.invocation_id)], args=args))
        return bool(int(res[0]))

    async def move(self, ref: EventRef, move: Move, now: float) -> MoveResult:
        # The base fields go with every move: the consumer may be first to write the record.
        fields = self._base(ref, now)
        for name, value in (("result", move.result), ("error", move.error)):
            if value is not None:
                fields += [name, value.decode(errors="replace")]
        if move.version is not None:
            fields += ["version", move.version]
        if move.request_id is not None:
            fields += ["request_id", move.request_id]
        allowed = ",".join(sorted(s.value for s in allowed_from(move.status)))
        args = ["move", str(ref.seq), move.status.value, allowed, str(move.attempts_delta), str(self._ttl_s), *fields]
        res = await self._call(self._script(keys=[record_key(ref.invocation_id)], args=args))
        return MoveResult(applied=bool(int(res[0])), status=_s(res[1]), attempts=int(res[2]))

    async def get(self, invocation_id: str) -> InvocationRecord | None:
        raw = await self._call(self._redis.hgetall(record_key(invocation_id)))
        if not raw:
            return None
        data = {_s(k): _s(v) for k, v in raw.items()}
        return InvocationRecord(
            invocation_id=data.get("id", invocation_id),
            namespace=data.get("namespace", ""),
            function=data.get("function", ""),
            qualifier=data.get("qualifier", ""),
            status=data.get("status", ""),
            attempts=int(data.get("attempts", "0") or 0),
            result_json=data.get("result", ""),
            error_json=data.get("error", ""),
            version=data.get("version", ""),
            request_id=data.get("request_id", ""),
            created_at=data.get("created_at", ""),
            updated_at=data.get("updated_at", ""),
        )
