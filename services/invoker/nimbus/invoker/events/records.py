"""Invocation records of async events: the lifecycle as a state machine, and the store's interface.

One record per invocation id, kept (in Redis) for NIMBUS_INVOCATION_TTL_S. A record describes one
stored event: `seq`, the event's JetStream stream sequence, orders writes. A write for a newer seq
(a replay, or an idempotency key reused after the dedup window) starts the record afresh; a write
for an older seq is dropped; writes for the same seq follow _ALLOWED. The store applies this rule
atomically (see stores/redis_records.py), so two invokers running the same event, or an accept
that lands after the consumer has started the event, can never move a record backwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class InvocationStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


S = InvocationStatus

# Within one stored event (one seq). RUNNING -> RUNNING: a redelivery after the invoker running it
# died; RUNNING -> QUEUED: waiting for a retry (function error) or requeued (throttled); QUEUED ->
# SUCCEEDED or QUEUED: a first run that ended before it was marked RUNNING (the consumer marks a
# first run only once it lasts a moment, and counts it with its outcome).
_ALLOWED: dict[InvocationStatus, frozenset[InvocationStatus]] = {
    S.QUEUED: frozenset({S.RUNNING, S.QUEUED, S.SUCCEEDED, S.FAILED}),
    S.RUNNING: frozenset({S.RUNNING, S.QUEUED, S.SUCCEEDED, S.FAILED}),
    S.SUCCEEDED: frozenset(),
    S.FAILED: frozenset(),
}

TERMINAL = frozenset({S.SUCCEEDED, S.FAILED})


def allowed_from(target: InvocationStatus) -> frozenset[InvocationStatus]:
    """The states a record may be in for a move to target (same seq)."""
    return frozenset(src for src, dests in _ALLOWED.items() if target in dests)


def can_move(current: InvocationStatus, target: InvocationStatus) -> bool:
    return target in _ALLOWED[current]


@dataclass(frozen=True, slots=True)
class EventRef:
    """What identifies a stored event and its record; carried in the event's headers."""

    invocation_id: str
    namespace: str
    function: str
    qualifier: str
    # Epoch seconds of the submission (a replay submits anew).
    submitted_at: float
    seq: int


@dataclass(frozen=True, slots=True)
class Move:
    """A state change the consumer asks for; attempts_delta counts runs of the function."""

    status: InvocationStatus
    attempts_delta: int = 0
    result: bytes | None = None
    error: bytes | None = None
    version: str | None = None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class MoveResult:
    applied: bool
    # The record's status after the call (the refused state when not applied; "" when absent).
    status: str
    attempts: int


def capped(value: bytes, max_bytes: int) -> tuple[bytes, int]:
    """A result or error as a record keeps it: whole up to max_bytes, else its first max_bytes
    (cut on a UTF-8 boundary) and its full size, as Lambda caps what async invocations carry.
    Returns (kept, full size if cut else 0). Pure."""
    if len(value) <= max_bytes:
        return value, 0
    return value[:max_bytes].decode("utf-8", "ignore").encode(), len(value)


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    invocation_id: str
    namespace: str
    function: str
    qualifier: str
    status: str
    attempts: int
    result_json: str
    error_json: str
    version: str
    request_id: str
    created_at: str
    updated_at: str
    # Set when the result (or error) was over the record's cap: its full size in bytes; the
    # record then holds only its first bytes (not valid JSON as a rule).
    result_size: int = 0
    error_size: int = 0


class RecordStore(Protocol):
    async def create(self, ref: EventRef, now: float) -> bool: ...
    async def move(self, ref: EventRef, move: Move, now: float) -> MoveResult: ...
    async def get(self, invocation_id: str) -> InvocationRecord | None: ...


def error_json(error_type: str, message: str) -> bytes:
    """A platform-side error in the function-error shape, for records and dead letters."""
    return json.dumps({"errorType": error_type, "errorMessage": message}).encode()
