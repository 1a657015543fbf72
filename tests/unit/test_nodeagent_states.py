"""The instance lifecycle table: every pair is either allowed or raises."""

from __future__ import annotations

import itertools

import pytest
from nimbus.common import model
from nimbus.nodeagent.state import (
    IllegalTransition,
    InstanceState,
    allowed,
    record_state,
    transition,
)

S = InstanceState

pytestmark = pytest.mark.timeout(10)

ALLOWED = {
    (S.STARTING, S.IDLE),
    (S.STARTING, S.DRAINING),
    (S.IDLE, S.BUSY),
    (S.IDLE, S.DRAINING),
    (S.BUSY, S.IDLE),
    (S.BUSY, S.DRAINING),
    (S.DRAINING, S.GONE),
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(S, S)))
def test_transition_table(src: InstanceState, dst: InstanceState) -> None:
    if (src, dst) in ALLOWED:
        assert transition(src, dst) is dst
    else:
        with pytest.raises(IllegalTransition):
            transition(src, dst)


def test_gone_is_terminal_and_every_state_reaches_it() -> None:
    assert allowed(S.GONE) == frozenset()
    for start in S:
        seen, todo = {start}, [start]
        while todo:
            for nxt in allowed(todo.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert S.GONE in seen


@pytest.mark.parametrize(
    ("state", "stored"),
    [
        (S.STARTING, None),
        (S.IDLE, model.InstanceState.READY),
        (S.BUSY, model.InstanceState.READY),
        (S.DRAINING, model.InstanceState.DRAINING),
        (S.GONE, None),
    ],
)
def test_record_state(state: InstanceState, stored: model.InstanceState | None) -> None:
    assert record_state(state) == stored


def test_etcd_only_ever_sees_the_three_shared_values() -> None:
    """The invokers and the scheduler know STARTING, READY and DRAINING; nothing else is written."""
    assert {record_state(s) for s in S} - {None} <= set(model.InstanceState)
