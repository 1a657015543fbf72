"""The instance lifecycle table: every pair is either allowed or raises."""

from __future__ import annotations

import itertools

import pytest

from nimbus.common import model
from nimbus.nodeagent.state import IllegalTransition, InstanceState, allowed, record_state, transition

S = InstanceState

pytestmark = pytest.mark.timeout(10)

ALLOWED = {
    (S.STARTING, S.READY),
    (S.STARTING, S.FAILED),
    (S.STARTING, S.STOPPING),
    (S.READY, S.BUSY),
    (S.READY, S.FAILED),
    (S.READY, S.STOPPING),
    (S.BUSY, S.READY),
    (S.BUSY, S.FAILED),
    (S.BUSY, S.STOPPING),
    (S.FAILED, S.STOPPING),
    (S.STOPPING, S.STOPPED),
}


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(S, S)))
def test_transition_table(src: InstanceState, dst: InstanceState) -> None:
    if (src, dst) in ALLOWED:
        assert transition(src, dst) is dst
    else:
        with pytest.raises(IllegalTransition):
            transition(src, dst)


def test_stopped_is_terminal_and_every_state_reaches_it() -> None:
    assert allowed(S.STOPPED) == frozenset()
    for start in S:
        seen, todo = {start}, [start]
        while todo:
            for nxt in allowed(todo.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert S.STOPPED in seen


@pytest.mark.parametrize(
    ("state", "stored"),
    [
        (S.STARTING, None),
        (S.READY, model.InstanceState.READY),
        (S.BUSY, model.InstanceState.READY),
        (S.FAILED, None),
        (S.STOPPING, None),
        (S.STOPPED, None),
    ],
)
def test_record_state(state: InstanceState, stored: model.InstanceState | None) -> None:
    assert record_state(state) == stored
