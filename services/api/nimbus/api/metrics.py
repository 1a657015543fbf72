"""GetMetrics' core: a function's per-minute counts and duration percentiles, oldest minute first,
one bucket for every minute of the window even when nothing happened in it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import fnmetrics as fm
from nimbus.common.auth import Principal
from nimbus.common.clock import Clock
from nimbus.common.errors import InvalidArgument
from nimbus.common.histogram import BUCKETS, percentile
from nimbus.common.model import FunctionRecord

DEFAULT_MINUTES = 60
# Minute hashes live 25 h; a day of them is always complete.
MAX_MINUTES = 1440


@dataclass(frozen=True, slots=True)
class MinuteMetrics:
    start: int
    invocations: int = 0
    errors: int = 0
    throttles: int = 0
    cold_starts: int = 0
    duration_p50_ms: float = 0.0
    duration_p90_ms: float = 0.0
    duration_p99_ms: float = 0.0
    duration_avg_ms: float = 0.0
    init_duration_avg_ms: float = 0.0
    max_memory_used_mb: int = 0


def check_minutes(minutes: int) -> int:
    """0 is the field left out: the default window."""
    if minutes == 0:
        return DEFAULT_MINUTES
    if not 1 <= minutes <= MAX_MINUTES:
        raise InvalidArgument(f"minutes: {minutes} is out of range; expected 1..{MAX_MINUTES}")
    return minutes


def minute_starts(now: float, minutes: int) -> list[int]:
    """The window's minutes, oldest first, ending with the minute `now` is in."""
    last = fm.minute_start(now)
    return [last - 60 * (minutes - 1 - i) for i in range(minutes)]


def minute_metrics(start: int, fields: Mapping[str, int]) -> MinuteMetrics:
    counts = [fields.get(fm.bucket_field(i), 0) for i in range(BUCKETS)]
    calls = fields.get(fm.INVOCATIONS, 0)
    inits = fields.get(fm.INITS, 0)
    return MinuteMetrics(
        start=start,
        invocations=calls,
        errors=fields.get(fm.ERRORS, 0),
        throttles=fields.get(fm.THROTTLES, 0),
        cold_starts=fields.get(fm.COLD_STARTS, 0),
        duration_p50_ms=round(percentile(counts, 0.50), 3),
        duration_p90_ms=round(percentile(counts, 0.90), 3),
        duration_p99_ms=round(percentile(counts, 0.99), 3),
        duration_avg_ms=round(fields.get(fm.DURATION_US, 0) / 1000 / calls, 3) if calls else 0.0,
        init_duration_avg_ms=round(fields.get(fm.INIT_US, 0) / 1000 / inits, 3) if inits else 0.0,
        max_memory_used_mb=fields.get(fm.MAX_MEMORY_MB, 0),
    )


class FunctionLookup(Protocol):
    async def get(self, who: Principal, name: str) -> FunctionRecord: ...


class MinuteStore(Protocol):
    async def minutes(
        self, namespace: str, function: str, starts: Sequence[int]
    ) -> list[dict[str, int]]: ...


class MetricsApi:
    def __init__(self, functions: FunctionLookup, store: MinuteStore, clock: Clock) -> None:
        self._functions = functions
        self._store = store
        self._clock = clock

    async def get(self, who: Principal, name: str, minutes: int) -> list[MinuteMetrics]:
        window = check_minutes(minutes)
        await self._functions.get(who, name)  # 404 for a function the namespace does not have
        starts = minute_starts(self._clock.now(), window)
        hashes = await self._store.minutes(who.namespace, name, starts)
        return [minute_metrics(start, fields) for start, fields in zip(starts, hashes, strict=True)]
