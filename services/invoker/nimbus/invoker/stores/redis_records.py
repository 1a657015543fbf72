"""Invocation records in Redis: one hash per invocation id with a TTL, written by Lua scripts that
apply the ordering rule of records.py atomically. Every failure surfaces as Unavailable.

redis.asyncio reconnects per command; each call gets a deadline, so a lost Redis costs a bounded
wait and a 503 (or a requeued event), never a hung or crashed invoker.
"""

from __future__ import annotations

import asyncio
import json
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
# delta, ttl, updated_at, the record's fixed fields as JSON (written only when the record starts),
# then field/value pairs. A newer seq starts the record afresh; an older one is dropped; in
# "create" mode an existing record of the same seq is left alone; in "move" mode the current
# status must be in allowed-from. Returns {applied 0|1, status, attempts}.
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
  local base = cjson.decode(ARGV[8])
  redis.call('HSET', KEYS[1], 'id', base[1], 'namespace', base[2], 'function', base[3], 'qualifier', base[4],
             'created_at', base[5])
end
if #ARGV > 8 then
  redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'status', ARGV[3], 'updated_at', ARGV[7], unpack(ARGV, 9))
else
  redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'status', ARGV[3], 'updated_at', ARGV[7])
end
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', tonumber(ARGV[5]))
if attempts < 0 then
  redis.call('HSET', KEYS[1], 'attempts', 0)
  attempts = 0
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
return {1, ARGV[3], attempts}
"""


_ALLOWED_FROM = {status: ",".join(sorted(s.value for s in allowed_from(status))) for status in InvocationStatus}


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
    def _base(ref: EventRef) -> str:
        return json.dumps([ref.invocation_id, ref.namespace, ref.function, ref.qualifier, iso(ref.submitted_at)])

    async def create(self, ref: EventRef, now: float) -> bool:
        """The QUEUED record of a just-stored event; leaves a record of the same event alone."""
        args: list[str | int | bytes] = ["create", ref.seq, InvocationStatus.QUEUED.value, "", 0, self._ttl_s, iso(now), self._base(ref)]
        res = await self._call(self._script(keys=[record_key(ref.invocation_id)], args=args))
        return bool(int(res[0]))

    async def move(self, ref: EventRef, move: Move, now: float) -> MoveResult:
        args: list[str | int | bytes] = [
            "move", ref.seq, move.status.value, _ALLOWED_FROM[move.status], move.attempts_delta, self._ttl_s, iso(now),
            self._base(ref),
        ]
        for name, value in (("result", move.result), ("error", move.error), ("version", move.version),
                            ("request_id", move.request_id)):
            if value is not None:
                args += [name, value]
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
