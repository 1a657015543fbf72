"""Pure decisions of the node-agent: no I/O, time passed in."""

from __future__ import annotations

import math
from collections.abc import Mapping


def idle_victims(last_used: Mapping[str, float], now: float, idle_s: float) -> list[str]:
    """Instances idle for idle_s or longer, oldest first; last_used and now are monotonic seconds."""
    old = [(used, iid) for iid, used in last_used.items() if now - used >= idle_s]
    return [iid for _, iid in sorted(old)]


def billed_ms(duration_us: int) -> int:
    """Lambda bills each started millisecond, and at least one."""
    return max(1, math.ceil(duration_us / 1000))


def fits(used_mb: int, request_mb: int, capacity_mb: int) -> bool:
    return used_mb + request_mb <= capacity_mb


def reap_interval_s(idle_s: float) -> float:
    """Check often enough that an instance outlives its idle time by at most a quarter of it (≤ 5 s)."""
    return max(0.5, min(5.0, idle_s / 4))
