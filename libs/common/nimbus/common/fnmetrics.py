"""The Redis layout of per-minute function metrics, written by the api's meter (invocations,
errors, durations, cold starts, from REPORT records) and by the invoker (throttles, which happen
before any node runs the call), read by the api's GetMetrics.

One hash per namespace, function and UTC minute, expiring 25 h after its minute began, so a day of
minutes is always there to read.
"""

from __future__ import annotations

MINUTE_TTL_S = 25 * 3600

INVOCATIONS = "inv"
ERRORS = "err"
THROTTLES = "thr"
COLD_STARTS = "cold"
# Sums in integer microseconds, so counters add exactly.
DURATION_US = "dur_us"
INIT_US = "init_us"
INITS = "inits"
# The largest max_memory_used_mb of the minute's calls.
MAX_MEMORY_MB = "mem"


def minute_start(ts: float) -> int:
    return int(ts // 60) * 60


def minute_key(namespace: str, function: str, minute: int) -> str:
    return f"nimbus:fnm:{namespace}/{function}:{minute}"


def expire_at(minute: int) -> int:
    return minute + MINUTE_TTL_S


def bucket_field(index: int) -> str:
    """The hash field counting durations in histogram bucket `index`
    (see nimbus.common.histogram)."""
    return f"h{index}"
