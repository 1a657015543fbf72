"""An instance's lifecycle on its node, as an explicit state machine.

    STARTING ──► IDLE ◄──► BUSY
        │          │         │
        └──────────┴────┬────┘
                        ▼
                    DRAINING ──► GONE

STARTING: a sandbox (fresh, or taken from the warm pool) is being given the function's code and
imports it. IDLE and BUSY: it serves calls, up to its instance_concurrency at a time (BUSY while at
least one runs). DRAINING: it takes no new call; the calls in flight (if any) may finish, then the
sandbox is stopped: after a destroy, the idle reaper, a timeout, a crash, or the node's own
shutdown. GONE: stopped, nothing left.

etcd stores only model.InstanceState's values, which the invokers and the scheduler read: READY
for IDLE and BUSY (which instance is busy is the invoker's own bookkeeping), DRAINING for
DRAINING. STARTING instances are not written (the scheduler waits on CreateInstance itself), and
GONE ones are deleted.
"""

from __future__ import annotations

from enum import StrEnum

from nimbus.common import model


class InstanceState(StrEnum):
    STARTING = "STARTING"
    IDLE = "IDLE"
    BUSY = "BUSY"
    DRAINING = "DRAINING"
    GONE = "GONE"


S = InstanceState

_ALLOWED: dict[InstanceState, frozenset[InstanceState]] = {
    S.STARTING: frozenset({S.IDLE, S.DRAINING}),
    S.IDLE: frozenset({S.BUSY, S.DRAINING}),
    S.BUSY: frozenset({S.IDLE, S.DRAINING}),
    S.DRAINING: frozenset({S.GONE}),
    S.GONE: frozenset(),
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
    if state in (S.IDLE, S.BUSY):
        return model.InstanceState.READY
    if state is S.DRAINING:
        return model.InstanceState.DRAINING
    return None
