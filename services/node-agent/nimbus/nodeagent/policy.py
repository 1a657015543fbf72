"""Pure decisions of the node-agent: no I/O, time passed in."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


def idle_victims(last_used: Mapping[str, float], now: float, idle_s: float) -> list[str]:
    """Instances idle for idle_s or longer, oldest first;
    last_used and now are monotonic seconds."""
    old = [(used, iid) for iid, used in last_used.items() if now - used >= idle_s]
    return [iid for _, iid in sorted(old)]


def billed_ms(duration_us: int) -> int:
    """Lambda bills each started millisecond, and at least one."""
    return max(1, math.ceil(duration_us / 1000))


def fits(used_mb: int, request_mb: int, capacity_mb: int) -> bool:
    return used_mb + request_mb <= capacity_mb


def reap_interval_s(idle_s: float) -> float:
    """Check often enough that an instance outlives its idle time by at most a
    quarter of it (≤ 5 s)."""
    return max(0.5, min(5.0, idle_s / 4))


# Lambda's ratio: a function with this much memory gets one full core.
MB_PER_CORE = 1769


def cpu_fraction(memory_mb: int) -> float:
    """Cores a function may use, in proportion to its memory, as Lambda allots them."""
    return memory_mb / MB_PER_CORE


@dataclass(frozen=True, slots=True)
class CachedCode:
    size: int
    # A logical clock: larger is more recent.
    last_used: int
    # Instances holding the package; a held package is never evicted.
    holders: int


def evict_victims(entries: Mapping[str, CachedCode], budget_bytes: int) -> list[str]:
    """Least recently used packages nobody holds, removed until the total fits the budget (or
    nothing more may go: held packages can keep the cache over budget)."""
    total = sum(e.size for e in entries.values())
    victims: list[str] = []
    for sha, entry in sorted(entries.items(), key=lambda kv: kv[1].last_used):
        if total <= budget_bytes:
            break
        if entry.holders == 0:
            victims.append(sha)
            total -= entry.size
    return victims
