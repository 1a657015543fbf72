"""Pure node-agent decisions: idle reaping, billing, capacity."""

from __future__ import annotations

import pytest
from nimbus.nodeagent.policy import (
    CachedCode,
    billed_ms,
    cpu_fraction,
    evict_victims,
    fits,
    idle_victims,
    reap_interval_s,
)
from nimbus.nodeagent.pool import deficits

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("last_used", "now", "idle_s", "want"),
    [
        ({}, 100.0, 10, []),
        ({"a": 95.0}, 100.0, 10, []),
        ({"a": 90.0}, 100.0, 10, ["a"]),
        ({"a": 50.0, "b": 10.0, "c": 99.0}, 100.0, 10, ["b", "a"]),
    ],
)
def test_idle_victims(
    last_used: dict[str, float], now: float, idle_s: float, want: list[str]
) -> None:
    assert idle_victims(last_used, now, idle_s) == want


@pytest.mark.parametrize(
    ("us", "ms"), [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (1_500_000, 1500)]
)
def test_billed_ms(us: int, ms: int) -> None:
    assert billed_ms(us) == ms


def test_fits_and_interval() -> None:
    assert fits(0, 128, 128) and not fits(1, 128, 128)
    assert reap_interval_s(600) == 5.0 and reap_interval_s(1) == 0.5 and reap_interval_s(8) == 2.0


def code(size: int, last_used: int, holders: int = 0) -> CachedCode:
    return CachedCode(size, last_used, holders)


@pytest.mark.parametrize(
    ("entries", "budget", "want"),
    [
        ({}, 0, []),
        ({"a": code(10, 1), "b": code(10, 2)}, 20, []),  # at the budget: nothing goes
        ({"a": code(10, 2), "b": code(10, 1)}, 15, ["b"]),  # least recently used first
        ({"a": code(10, 1, holders=1), "b": code(10, 2)}, 15, ["b"]),  # held code is never evicted
        ({"a": code(10, 1), "b": code(10, 2), "c": code(10, 3)}, 5, ["a", "b", "c"]),
        ({"a": code(50, 1, holders=2)}, 10, []),  # over budget, but nothing may go
    ],
)
def test_evict_victims(entries: dict[str, CachedCode], budget: int, want: list[str]) -> None:
    assert evict_victims(entries, budget) == want


@pytest.mark.parametrize(("memory_mb", "cores"), [(1769, 1.0), (128, 128 / 1769), (3538, 2.0)])
def test_cpu_in_proportion_to_memory(memory_mb: int, cores: float) -> None:
    assert cpu_fraction(memory_mb) == pytest.approx(cores)


@pytest.mark.parametrize(
    ("sizes", "idle", "want"),
    [
        ({"python3.11": 2, "nodejs20": 1}, {}, ["python3.11", "nodejs20"]),
        ({"python3.11": 2, "nodejs20": 1}, {"python3.11": 1}, ["nodejs20", "python3.11"]),
        ({"python3.11": 2, "nodejs20": 1}, {"python3.11": 2, "nodejs20": 1}, []),
        ({"python3.11": 0}, {}, []),
    ],
)
def test_pool_deficits(sizes: dict[str, int], idle: dict[str, int], want: list[str]) -> None:
    assert deficits(sizes, idle) == want
