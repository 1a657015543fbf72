"""An instance's lifecycle on its node, as an explicit state machine.

    STARTING ──► READY ◄──► BUSY
        │          │          │
        ├──► FAILED ◄─────────┤        (init error, timeout, the process died)
        ▼          ▼          ▼
               STOPPING ──► STOPPED

Only READY and BUSY instances have an etcd record; the record stores model.InstanceState.READY
for both, since which instance is busy is the invoker's own bookkeeping.
"""

from __future__ import annotations

from enum import StrEnum

from nimbus.common import model


class InstanceState(StrEnum):
    STARTING = "STARTING"
    READY = "READY"
    BUSY = "BUSY"
    FAILED = "FAILED"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


S = InstanceState

_ALLOWED: dict[InstanceState, frozenset[InstanceState]] = {
    S.STARTING: frozenset({S.READY, S.FAILED, S.STOPPING}),
    S.READY: frozenset({S.BUSY, S.FAILED, S.STOPPING}),
    S.BUSY: frozenset({S.READY, S.FAILED, S.STOPPING}),
    S.FAILED: frozenset({S.STOPPING}),
    S.STOPPING: frozenset({S.STOPPED}),
    S.STOPPED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A bug: code tried a transition the table forbids."""


def transition(current: InstanceState, target: InstanceState) -> InstanceState:
    if target not in _ALLOWED[current]:
        raise IllegalTransition(f"instance cannot go from {current} to {target}")
    return target


def allowed(current: InstanceState) -> frozenset[InstanceState]:
    return _ALLOWED[current]


def record_state(state: InstanceState) -> model.InstanceState | None:
    """What etcd stores for a state; None when the instance must have no record."""
    if state in (S.READY, S.BUSY):
        return model.InstanceState.READY
    return None
