"""Invocation records in Redis: one hash per invocation id with a TTL, written by a Lua script that
applies the ordering rule of events/records.py atomically. Every failure surfaces as Unavailable.

Writes are coalesced: those that come while a batch is in flight wait, and go together as one
script call when it returns (one round trip, one command for Redis to run, instead of one each).
Each write's outcome is its own; a lost Redis fails every write of the batch.

redis.asyncio reconnects per command; each call gets a deadline, so a lost Redis costs a bounded
wait and a 503 (or a requeued event), never a hung or crashed invoker.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions
from nimbus.common.clock import iso
from nimbus.common.errors import Unavailable
from nimbus.invoker.events.records import (
    EventRef,
    InvocationRecord,
    InvocationStatus,
    Move,
    MoveResult,
    allowed_from,
    capped,
)

CALL_TIMEOUT_S = 2.0
PREFIX = "nimbus:inv:"
# Writes per script call; more wait for the next one.
MAX_BATCH = 256

# KEYS: the records. ARGV[1]: the TTL; ARGV[2]: one JSON list per record: mode (create|move), seq,
# status, allowed-from (comma list), attempts delta, updated_at, the record's fixed fields (id,
# namespace, function, qualifier, created_at; written only when the record starts), then a flat
# list of field names and values, where a number n stands for the bytes in ARGV[n] (results and
# errors travel as they are, not as JSON strings). A newer seq starts the record afresh; an older
# one is dropped; in "create" mode an existing record of the same seq is left alone; in "move"
# mode the current status must be in allowed-from. Returns, as JSON, per record
# [applied 0|1, status, attempts]. One JSON string each way keeps the client's packing and
# parsing (pure Python) to a C call, whatever the batch holds.
_WRITE = """
local ttl = tonumber(ARGV[1])
local out = {}
for k, w in ipairs(cjson.decode(ARGV[2])) do
  local key = KEYS[k]
  local seq, status = tonumber(w[2]), w[3]
  local cur = redis.call('HMGET', key, 'seq', 'status', 'attempts')
  local cseq = tonumber(cur[1])
  local fresh = (cseq == nil) or (seq > cseq)
  local ok = fresh
  if not fresh and w[1] == 'move' and seq == cseq then
    for s in string.gmatch(w[4], '[^,]+') do
      if s == cur[2] then ok = true end
    end
  end
  if not ok then
    out[k] = {0, cur[2] or '', tonumber(cur[3]) or 0}
  else
    if fresh then
      if cseq ~= nil then redis.call('DEL', key) end
      redis.call('HSET', key, 'id', w[7], 'namespace', w[8], 'function', w[9],
                 'qualifier', w[10], 'created_at', w[11])
    end
    local set = {'seq', w[2], 'status', status, 'updated_at', w[6]}
    local fields = w[12]
    for j = 1, #fields, 2 do
      local value = fields[j + 1]
      if type(value) == 'number' then value = ARGV[value] end
      set[#set + 1] = fields[j]
      set[#set + 1] = value
    end
    redis.call('HSET', key, unpack(set))
    local attempts = redis.call('HINCRBY', key, 'attempts', w[5])
    if attempts < 0 then
      redis.call('HSET', key, 'attempts', 0)
      attempts = 0
    end
    redis.call('EXPIRE', key, ttl)
    out[k] = {1, status, attempts}
  end
end
return cjson.encode(out)
"""


_ALLOWED_FROM = {
    status: ",".join(sorted(s.value for s in allowed_from(status))) for status in InvocationStatus
}

# One record's write as the script takes it; field values that are bytes go in ARGV.
_Item = list[Any]
_Reply = list[Any]


def record_key(invocation_id: str) -> str:
    return PREFIX + invocation_id


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _unavailable(err: BaseException) -> Unavailable:
    return Unavailable(f"redis unavailable: {type(err).__name__}: {err}")


# What one record keeps of a result or an error (events.records.capped): a function returning
# 96 MB must not park 96 MB in Redis for a day.
PAYLOAD_MAX_BYTES = 256 * 1024


class RedisRecords:
    def __init__(self, url: str, ttl_s: int, payload_max_bytes: int = PAYLOAD_MAX_BYTES) -> None:
        self._payload_max_bytes = payload_max_bytes
        self._redis = aioredis.from_url(
            url,
            socket_timeout=CALL_TIMEOUT_S,
            socket_connect_timeout=CALL_TIMEOUT_S,
            health_check_interval=15,
            max_connections=256,
        )
        self._ttl_s = ttl_s
        self._script = self._redis.register_script(_WRITE)
        self._queue: list[tuple[str, _Item, asyncio.Future[_Reply]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._redis.aclose()

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def _call(self, coro: Any) -> Any:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await coro
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            raise _unavailable(err) from err

    async def _write(self, ref: EventRef, item: _Item) -> _Reply:
        """Queues one record's write for the next batch and waits for its own reply."""
        waiter: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        self._queue.append((record_key(ref.invocation_id), item, waiter))
        if self._flusher is None:
            # A context of its own: a batch carries many events' writes, none of their traces.
            self._flusher = asyncio.create_task(self._flush(), context=contextvars.Context())
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await waiter
        except TimeoutError as err:
            raise _unavailable(err) from err

    async def _flush(self) -> None:
        """Sends what is queued, one batch at a time, until nothing is. It starts on the loop's
        next turn, so the writes made in the same instant as the first go with it."""
        batch: list[tuple[str, _Item, asyncio.Future[_Reply]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                items: list[_Item] = []
                args: list[str | int | bytes] = [self._ttl_s, ""]
                for _, item, _ in batch:
                    fields = item[11]
                    for i in range(1, len(fields), 2):
                        if isinstance(fields[i], bytes):
                            args.append(fields[i])
                            fields[i] = len(args)
                    items.append(item)
                args[1] = json.dumps(items)
                replies: list[_Reply] = []
                error: Unavailable | None = None
                try:
                    async with asyncio.timeout(CALL_TIMEOUT_S):
                        replies = json.loads(
                            await self._script(keys=[key for key, _, _ in batch], args=args)
                        )
                except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
                    error = _unavailable(err)
                for index, (_, _, waiter) in enumerate(batch):
                    if waiter.done():
                        continue  # its caller gave up
                    if error is not None:
                        waiter.set_exception(error)
                    else:
                        waiter.set_result(replies[index])
                batch = []
        except BaseException as err:
            # Closing, or a reply not of the expected shape: no write may wait for a batch that
            # will not be sent.
            failure = Unavailable(f"redis write not done: {type(err).__name__}: {err}")
            for _, _, waiter in batch + self._queue:
                if not waiter.done():
                    waiter.set_exception(failure)
            self._queue = []
            raise
        finally:
            self._flusher = None

    @staticmethod
    def _item(
        mode: str,
        ref: EventRef,
        status: InvocationStatus,
        attempts_delta: int,
        now: float,
        fields: list[str | bytes],
    ) -> _Item:
        return [
            mode,
            str(ref.seq),
            status.value,
            _ALLOWED_FROM[status] if mode == "move" else "",
            attempts_delta,
            iso(now),
            ref.invocation_id,
            ref.namespace,
            ref.function,
            ref.qualifier,
            iso(ref.submitted_at),
            fields,
        ]

    async def create(self, ref: EventRef, now: float) -> bool:
        """The QUEUED record of a just-stored event; leaves a record of the same event alone."""
        res = await self._write(ref, self._item("create", ref, InvocationStatus.QUEUED, 0, now, []))
        return bool(res[0])

    async def move(self, ref: EventRef, move: Move, now: float) -> MoveResult:
        fields: list[str | bytes] = []
        for name, payload in (("result", move.result), ("error", move.error)):
            if payload is not None:
                kept, size = capped(payload, self._payload_max_bytes)
                fields += [name, kept, f"{name}_size", str(size)]
        for name, value in (("version", move.version), ("request_id", move.request_id)):
            if value is not None:
                fields += [name, value]
        res = await self._write(
            ref, self._item("move", ref, move.status, move.attempts_delta, now, fields)
        )
        return MoveResult(applied=bool(res[0]), status=str(res[1]), attempts=int(res[2]))

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
            result_size=int(data.get("result_size", "0") or 0),
            error_size=int(data.get("error_size", "0") or 0),
        )
