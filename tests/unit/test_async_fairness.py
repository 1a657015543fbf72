"""The async path's fair share across namespaces (events/fairness.py): pure, table-driven."""

from __future__ import annotations

import pytest
from nimbus.invoker.events import fairness


@pytest.mark.parametrize(("workers", "cap"), [(1, 1), (2, 2), (7, 7), (8, 7), (16, 14), (32, 28)])
def test_one_namespace_leaves_an_eighth_for_the_others(workers, cap):
    assert fairness.namespace_cap(workers) == cap


@pytest.mark.parametrize(
    ("running_total", "running", "busy", "busy_lanes", "room"),
    [
        (0, 0, False, 0, 1),  # a quiet lane keeps one event asked for
        (16, 0, False, 1, 1),  # even with every slot taken: its first event comes at once
        (0, 0, True, 1, 14),  # alone and busy: every slot it may hold
        (10, 10, True, 1, 4),  # what it may still run
        (0, 0, True, 2, 8),  # two busy lanes: half each
        (14, 14, True, 2, 1),  # a flood at its cap asks for one (held, started when fair)
        (3, 0, True, 3, 6),  # three busy lanes: a third each, rounded up
    ],
)
def test_ask_room(running_total, running, busy, busy_lanes, room):
    assert fairness.ask_room(16, running_total, running, busy, busy_lanes) == room


def test_the_namespace_with_fewest_running_starts_next():
    order = ["a", "b", "c"]
    assert fairness.next_namespace(order, {"a": 5, "b": 1}, {"a": 10, "b": 0}, 14) == "b"
    # b has nothing at hand: a, although it runs more
    assert fairness.next_namespace(order, {"a": 5}, {"a": 10, "b": 0}, 14) == "a"


def test_ties_go_to_the_least_recently_started():
    assert fairness.next_namespace(["b", "a"], {"a": 1, "b": 1}, {}, 14) == "b"
    assert fairness.next_namespace(["a", "b"], {"a": 1, "b": 1}, {}, 14) == "a"


def test_nothing_starts_past_the_cap_or_without_events():
    assert fairness.next_namespace(["a"], {"a": 3}, {"a": 14}, 14) is None
    assert fairness.next_namespace(["a", "b"], {}, {}, 14) is None
