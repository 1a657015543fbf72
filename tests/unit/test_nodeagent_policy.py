"""Pure node-agent decisions: idle reaping, billing, capacity."""

from __future__ import annotations

import pytest

from nimbus.nodeagent.policy import billed_ms, fits, idle_victims, reap_interval_s

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
def test_idle_victims(last_used: dict[str, float], now: float, idle_s: float, want: list[str]) -> None:
    assert idle_victims(last_used, now, idle_s) == want


@pytest.mark.parametrize(("us", "ms"), [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (1_500_000, 1500)])
def test_billed_ms(us: int, ms: int) -> None:
    assert billed_ms(us) == ms


def test_fits_and_interval() -> None:
    assert fits(0, 128, 128) and not fits(1, 128, 128)
    assert reap_interval_s(600) == 5.0 and reap_interval_s(1) == 0.5 and reap_interval_s(8) == 2.0
