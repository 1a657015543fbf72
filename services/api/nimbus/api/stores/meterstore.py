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
from nimbus.common.clock import Clock
from nimbus.common.errors import Unavailable
from nimbus.common.histogram import bucket_of

CALL_TIMEOUT_S = 5.0
# Usage is what users are billed for: kept beyond the longest range GetUsage reads (366 days).
USAGE_TTL_S = 400 * 86400
# Reports per script call: bounds how long one call holds Redis.
_CHUNK = 500

# KEYS: one seen key per report, then the batch's distinct hashes (usage and minute keys).
# ARGV: the seen TTL, the report count n, the hash count k, each hash's expire-at, then one packed
# line per report (see report_line); a hash index of 0 means the report adds nothing to that kind
# of hash (its retention has passed). SET NX gates each report; the new ones are summed in Lua and
# written with one HINCRBY per hash and field, so a batch costs Redis a SET per report and a few
# commands per function and minute instead of fourteen per report. The script runs atomically:
# a report is counted entirely or not at all.
APPLY = """
local ttl, n, k = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local sums, mem = {}, {}
local function add(h, field, v)
  v = tonumber(v)
  if v ~= 0 then
    local t = sums[h]
    if not t then t = {}; sums[h] = t end
    t[field] = (t[field] or 0) + v
  end
end
local applied = 0
for i = 1, n do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ttl) then
    local u, m, fv, bucket, mbms, err, cold, dur, init, inits, mb = string.match(ARGV[3 + k + i],
      '^(%d+) (%d+) (%S+) (%S+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+) (%d+)$')
    u, m = tonumber(u), tonumber(m)
    if u ~= 0 then
      u = n + u
      add(u, fv .. '|req', 1)
      add(u, fv .. '|mbms', mbms)
    end
    if m ~= 0 then
      m = n + m
      add(m, 'inv', 1)
      add(m, 'err', err)
      add(m, 'cold', cold)
      add(m, 'dur_us', dur)
      add(m, bucket, 1)
      add(m, 'init_us', init)
      add(m, 'inits', inits)
      mb = tonumber(mb)
      if mb > (mem[m] or 0) then mem[m] = mb end
    end
    applied = applied + 1
  end
end
for h, fields in pairs(sums) do
  for field, v in pairs(fields) do
    redis.call('HINCRBY', KEYS[h], field, string.format('%d', v))
  end
  redis.call('EXPIREAT', KEYS[h], ARGV[3 + h - n])
end
for h, mb in pairs(mem) do
  if mb > tonumber(redis.call('HGET', KEYS[h], 'mem') or '0') then
    redis.call('HSET', KEYS[h], 'mem', mb)
  end
end
return applied
"""


def usage_key(namespace: str, day: str) -> str:
    return f"nimbus:usage:{namespace}:{day}"


def seen_key(namespace: str, request_id: str) -> str:
    return f"nimbus:meter:seen:{namespace}:{request_id}"


def _day_epoch(day: str) -> int:
    return int(datetime.combine(date.fromisoformat(day), time(), UTC).timestamp())


def script_args(
    reports: Sequence[Report], seen_ttl_s: int, now_s: float
) -> tuple[list[str], list[int | str]]:
    """KEYS and ARGV of one APPLY call for these reports, at wall time `now_s`. Pure.

    A report older than a hash's retention (a node that shipped a backlog after a long outage) is
    still marked seen, but adds nothing to a hash that would already have expired: an EXPIREAT in
    the past would delete the whole hash, with the counts of every other call in it. Usage is kept
    400 days and read 366 back, so in practice only the 25 h minute metrics skip such a report."""
    seen = [seen_key(r.namespace, r.request_id) for r in reports]
    # hash key → its 1-based index among the hashes; and each one's expire-at, in that order
    index: dict[str, int] = {}
    expires: list[int] = []
    lines: list[str] = []

    def slot(key: str, expire_at: int) -> int:
        if expire_at <= now_s:
            return 0
        if key not in index:
            index[key] = len(index) + 1
            expires.append(expire_at)
        return index[key]

    for r in reports:
        day, minute = r.day, fm.minute_start(r.epoch_s)
        usage = slot(usage_key(r.namespace, day), _day_epoch(day) + USAGE_TTL_S)
        per_minute = slot(fm.minute_key(r.namespace, r.function, minute), fm.expire_at(minute))
        lines.append(report_line(r, usage, per_minute))
    return seen + list(index), [seen_ttl_s, len(reports), len(index), *expires, *lines]


def report_line(r: Report, usage: int, minute: int) -> str:
    """One report as APPLY reads it: space-separated, every field a token without spaces
    (function names and versions cannot hold one; validated in meter.report_of)."""
    return (
        f"{usage} {minute} {r.function}|{r.version}"
        f" {fm.bucket_field(bucket_of(r.duration_ms))} {r.mb_ms}"
        f" {1 if r.error else 0} {1 if r.cold_start else 0} {round(r.duration_ms * 1000)}"
        f" {round(r.init_duration_ms * 1000)} {1 if r.init_duration_ms > 0 else 0}"
        f" {r.max_memory_used_mb}"
    )


def _unavailable(err: BaseException) -> Unavailable:
    return Unavailable(f"Redis failed: {type(err).__name__}: {err}".rstrip(": "))


class RedisMeter:
    def __init__(self, url: str, seen_ttl_s: int, clock: Clock) -> None:
        self._clock = clock
        self._redis = aioredis.from_url(
            url, socket_timeout=CALL_TIMEOUT_S, socket_connect_timeout=CALL_TIMEOUT_S
        )
        self._apply = self._redis.register_script(APPLY)
        self._seen_ttl_s = seen_ttl_s

    async def apply(self, reports: Sequence[Report]) -> int:
        applied = 0
        try:
            for start in range(0, len(reports), _CHUNK):
                keys, args = script_args(
                    reports[start : start + _CHUNK], self._seen_ttl_s, self._clock.now()
                )
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
                cells.append(
                    UsageRow(
                        function,
                        version,
                        day,
                        fields.get(f"{fv}|req", 0),
                        fields.get(f"{fv}|mbms", 0),
                    )
                )
        return cells

    async def minutes(
        self, namespace: str, function: str, starts: Sequence[int]
    ) -> list[dict[str, int]]:
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
