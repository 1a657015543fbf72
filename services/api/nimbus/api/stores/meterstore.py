"""Redis adapter of metering: the usage aggregates, the per-minute function metrics and the
request ids already counted.

  nimbus:meter:seen:<ns>:<request_id>  set once a REPORT is applied; outlives any redelivery
  nimbus:usage:<ns>:<day>              hash "<function>|<version>|req" and "...|mbms" (exact MB-ms)
  nimbus:fnm:<ns>/<fn>:<minute>        per-minute metrics, laid out in nimbus.common.fnmetrics
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime, time

import redis.asyncio as aioredis
import redis.exceptions

from nimbus.api.meter import Report
from nimbus.api.usage import UsageRow
from nimbus.common import fnmetrics as fm
from nimbus.common.errors import Unavailable
from nimbus.common.histogram import bucket_of

CALL_TIMEOUT_S = 5.0
# Usage is what users are billed for: kept beyond the longest range GetUsage reads (366 days).
USAGE_TTL_S = 400 * 86400
# Reports per script call: bounds how long one call holds Redis.
_CHUNK = 200

# Per report: KEYS seen, usage, minute; ARGV (after ARGV[1], the seen TTL) _FIELDS values each.
# SET NX and the increments run in one script, so a report is counted entirely or not at all.
APPLY = """
local ttl = ARGV[1]
local applied = 0
for i = 0, #KEYS / 3 - 1 do
  local a = 1 + i * 11
  if redis.call('SET', KEYS[3*i+1], '1', 'NX', 'EX', ttl) then
    local usage, minute, fv = KEYS[3*i+2], KEYS[3*i+3], ARGV[a+1]
    redis.call('HINCRBY', usage, fv .. '|req', 1)
    redis.call('HINCRBY', usage, fv .. '|mbms', ARGV[a+2])
    redis.call('EXPIREAT', usage, ARGV[a+3])
    redis.call('HINCRBY', minute, 'inv', 1)
    redis.call('HINCRBY', minute, 'err', ARGV[a+4])
    redis.call('HINCRBY', minute, 'cold', ARGV[a+5])
    redis.call('HINCRBY', minute, 'dur_us', ARGV[a+6])
    redis.call('HINCRBY', minute, ARGV[a+7], 1)
    redis.call('HINCRBY', minute, 'init_us', ARGV[a+8])
    redis.call('HINCRBY', minute, 'inits', ARGV[a+9])
    local mem = tonumber(ARGV[a+10])
    if mem > tonumber(redis.call('HGET', minute, 'mem') or '0') then
      redis.call('HSET', minute, 'mem', mem)
    end
    redis.call('EXPIREAT', minute, ARGV[a+11])
    applied = applied + 1
  end
end
return applied
"""
_FIELDS = 11


def usage_key(namespace: str, day: str) -> str:
    return f"nimbus:usage:{namespace}:{day}"


def seen_key(namespace: str, request_id: str) -> str:
    return f"nimbus:meter:seen:{namespace}:{request_id}"


def _day_epoch(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), time(), UTC).timestamp())


def report_args(r: Report) -> tuple[list[str], list[object]]:
    minute = fm.minute_start(r.epoch_s)
    keys = [seen_key(r.namespace, r.request_id), usage_key(r.namespace, r.day), fm.minute_key(r.namespace, r.function, minute)]
    args: list[object] = [
        f"{r.function}|{r.version}",
        r.mb_ms,
        _day_epoch(r.day) + USAGE_TTL_S,
        1 if r.error else 0,
        1 if r.cold_start else 0,
        round(r.duration_ms * 1000),
        fm.bucket_field(bucket_of(r.duration_ms)),
        round(r.init_duration_ms * 1000),
        1 if r.init_duration_ms > 0 else 0,
        r.max_memory_used_mb,
        fm.expire_at(minute),
    ]
    return keys, args


def _unavailable(err: BaseException) -> Unavailable:
    return Unavailable(f"Redis failed: {type(err).__name__}: {err}".rstrip(": "))


class RedisMeter:
    def __init__(self, url: str, seen_ttl_s: int) -> None:
        self._redis = aioredis.from_url(url, socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S)
        self._apply = self._redis.register_script(APPLY)
        self._seen_ttl_s = seen_ttl_s

    async def apply(self, reports: Sequence[Report]) -> int:
        applied = 0
        try:
            for start in range(0, len(reports), _CHUNK):
                keys: list[str] = []
                args: list[object] = [self._seen_ttl_s]
                for r in reports[start : start + _CHUNK]:
                    k, a = report_args(r)
                    keys += k
                    args += a
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    applied += int(await self._apply(keys=keys, args=args))
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            raise _unavailable(err) from err
        return applied

    async def usage(self, namespace: str, days: Sequence[str]) -> list[UsageRow]:
        hashes = await self._hgetall_all([usage_key(namespace, day) for day in days])
        cells: list[UsageRow] = []
        for day, fields in zip(days, hashes, strict=True):
            for fv in {name.rpartition("|")[0] for name in fields}:
                function, _, version = fv.partition("|")
                cells.append(UsageRow(function, version, day, fields.get(f"{fv}|req", 0), fields.get(f"{fv}|mbms", 0)))
        return cells

    async def minutes(self, namespace: str, function: str, starts: Sequence[int]) -> list[dict[str, int]]:
        return await self._hgetall_all([fm.minute_key(namespace, function, m) for m in starts])

    async def _hgetall_all(self, keys: Sequence[str]) -> list[dict[str, int]]:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                pipe = self._redis.pipeline(transaction=False)
                for key in keys:
                    pipe.hgetall(key)
                raw = await pipe.execute()
        except (redis.exceptions.RedisError, OSError, TimeoutError) as err:
            raise _unavailable(err) from err
        return [{k.decode(): int(v) for k, v in h.items()} for h in raw]

    async def close(self) -> None:
        await self._redis.aclose()
