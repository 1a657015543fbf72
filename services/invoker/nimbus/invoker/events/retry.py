"""What to do with an async event after a run: a pure policy of the outcome, attempts, age and
config.

- success: ack.
- the function failed (it raised, timed out or could not load): retry after an exponential backoff
  while attempts <= max_retries, else dead-letter (retries_exhausted).
- throttled (429) or a platform error (503, a node gone): requeue after a backoff of its own,
  without counting an attempt; the attempt counter is given back.
- the function or qualifier is gone, or the event is unusable: dead-letter at once.
- an event older than max_event_age_s is dead-lettered instead of run or retried (event_too_old).

Delays get "equal jitter" (half fixed, half drawn) so retries of a burst spread out; `draw` is a
uniform number in [0, 1) passed in, so tests pin it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FUNCTION_ERROR = "function_error"
    THROTTLED = "throttled"
    UNAVAILABLE = "unavailable"
    NOT_FOUND = "not_found"
    INVALID = "invalid"


class Action(StrEnum):
    ACK = "ack"
    RETRY = "retry"
    REQUEUE = "requeue"
    DEAD_LETTER = "dead_letter"


class Reason(StrEnum):
    RETRIES_EXHAUSTED = "retries_exhausted"
    EVENT_TOO_OLD = "event_too_old"
    NOT_FOUND = "function_not_found"
    INVALID = "invalid_event"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 2
    max_event_age_s: float = 21600.0
    # Function errors: base, 2×base, 4×base … capped.
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    # Throttling and platform errors: shorter, and they never exhaust (only the event's age ends
    # them).
    requeue_base_s: float = 0.5
    requeue_max_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    reason: Reason | None = None


def _jittered(base: float, factor_exp: int, cap: float, draw: float) -> float:
    full = min(cap, base * float(2 ** max(0, factor_exp)))
    return full / 2 + (full / 2) * draw


def retry_delay(attempts: int, policy: RetryPolicy, draw: float) -> float:
    """Delay before run number attempts+1, after `attempts` failed runs (attempts >= 1)."""
    return _jittered(policy.retry_base_s, attempts - 1, policy.retry_max_s, draw)


def requeue_delay(deliveries: int, policy: RetryPolicy, draw: float) -> float:
    """Delay after a throttled or unavailable delivery; grows with the JetStream delivery count."""
    return _jittered(policy.requeue_base_s, min(deliveries - 1, 16), policy.requeue_max_s, draw)


def expired(age_s: float, policy: RetryPolicy) -> bool:
    return age_s >= policy.max_event_age_s


def decide(
    outcome: Outcome, attempts: int, deliveries: int, age_s: float, policy: RetryPolicy, draw: float
) -> Decision:
    """attempts: runs of the function so far, this one included; deliveries: JetStream's count."""
    if outcome == Outcome.SUCCEEDED:
        return Decision(Action.ACK)
    if outcome == Outcome.NOT_FOUND:
        return Decision(Action.DEAD_LETTER, reason=Reason.NOT_FOUND)
    if outcome == Outcome.INVALID:
        return Decision(Action.DEAD_LETTER, reason=Reason.INVALID)
    if outcome == Outcome.FUNCTION_ERROR:
        if attempts > policy.max_retries:
            return Decision(Action.DEAD_LETTER, reason=Reason.RETRIES_EXHAUSTED)
        delay = retry_delay(attempts, policy, draw)
        if expired(age_s + delay, policy):
            return Decision(Action.DEAD_LETTER, reason=Reason.EVENT_TOO_OLD)
        return Decision(Action.RETRY, delay_s=delay)
    # Throttled or unavailable: not the function's fault.
    delay = requeue_delay(deliveries, policy, draw)
    if expired(age_s + delay, policy):
        return Decision(Action.DEAD_LETTER, reason=Reason.EVENT_TOO_OLD)
    return Decision(Action.REQUEUE, delay_s=delay)
