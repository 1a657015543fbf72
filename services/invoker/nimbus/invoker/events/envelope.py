"""The wire format of async events and dead letters on JetStream. Pure.

An event is one message on nimbus.events.<namespace>.<function>: the body is the event (JSON, as
the client sent it) and the headers carry what the consumer needs to run it and keep its record.
A dead letter is a JSON document on nimbus.dlq.<namespace>.<function>.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.errors import InvalidArgument
from nimbus.invoker.events.records import EventRef

H_INVOCATION = "Nimbus-Invocation-Id"
H_NAMESPACE = "Nimbus-Namespace"
H_FUNCTION = "Nimbus-Function"
H_QUALIFIER = "Nimbus-Qualifier"
H_SUBMITTED = "Nimbus-Submitted-At"
H_SOURCE = "Nimbus-Source"

# A fixed UUID namespace: invocation ids derived from idempotency keys and timer ticks are the
# same on every replica and across restarts.
_ID_SPACE = uuid.UUID("6f1c1f0e-5a8e-4e43-9a55-6e696d627573")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
MAX_IDEMPOTENCY_KEY = 128


def event_subject(namespace: str, function: str) -> str:
    return f"nimbus.events.{namespace}.{function}"


def events_filter(namespace: str) -> str:
    """The subjects of every event of one namespace."""
    return event_subject(namespace, ">")


def dlq_subject(namespace: str, function: str) -> str:
    return f"nimbus.dlq.{namespace}.{function}"


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_SPACE, "\x1f".join(parts)))


def new_id() -> str:
    return str(uuid.uuid4())


def check_invocation_id(invocation_id: str, field: str = "id") -> None:
    if not _UUID.fullmatch(invocation_id):
        raise InvalidArgument(
            f"{field}: {invocation_id!r} is not an invocation id (a UUID as InvokeAsync returns)"
        )


def check_idempotency_key(key: str) -> None:
    if len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable() or not key.isascii():
        raise InvalidArgument(
            f"x-nimbus-idempotency-key: must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters"
        )


def event_headers(
    invocation_id: str,
    namespace: str,
    function: str,
    qualifier: str,
    submitted_at: float,
    source: str,
) -> dict[str, str]:
    return {
        H_INVOCATION: invocation_id,
        H_NAMESPACE: namespace,
        H_FUNCTION: function,
        H_QUALIFIER: qualifier,
        H_SUBMITTED: repr(submitted_at),
        H_SOURCE: source,
    }


def parse_event(headers: Mapping[str, str] | None, seq: int) -> EventRef:
    """Raises ValueError for a message that is not a Nimbus event."""
    h = headers or {}
    try:
        ref = EventRef(
            invocation_id=h[H_INVOCATION],
            namespace=h[H_NAMESPACE],
            function=h[H_FUNCTION],
            qualifier=h.get(H_QUALIFIER, ""),
            submitted_at=float(h[H_SUBMITTED]),
            seq=seq,
        )
    except (KeyError, ValueError) as err:
        raise ValueError(f"not a Nimbus event: missing or bad header {err}") from None
    if not ref.invocation_id or not ref.namespace or not ref.function:
        raise ValueError("not a Nimbus event: empty id, namespace or function")
    return ref


@dataclass(frozen=True, slots=True)
class DeadLetter:
    invocation_id: str
    namespace: str
    function: str
    qualifier: str
    event: bytes
    error: bytes
    attempts: int
    created_at: str
    failed_at: str
    reason: str
    # Its sequence in the dead-letter stream (0 before it is stored).
    seq: int = 0

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "invocation_id": self.invocation_id,
                "namespace": self.namespace,
                "function": self.function,
                "qualifier": self.qualifier,
                # Bytes as the client sent them, so a replay runs exactly the same event.
                "event_b64": base64.b64encode(self.event).decode(),
                "error": self.error.decode(errors="replace"),
                "attempts": self.attempts,
                "created_at": self.created_at,
                "failed_at": self.failed_at,
                "reason": self.reason,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes, seq: int) -> DeadLetter:
        data = json.loads(raw)
        return cls(
            invocation_id=str(data["invocation_id"]),
            namespace=str(data["namespace"]),
            function=str(data["function"]),
            qualifier=str(data.get("qualifier", "")),
            event=base64.b64decode(data.get("event_b64", "")),
            error=str(data.get("error", "")).encode(),
            attempts=int(data.get("attempts", 0)),
            created_at=str(data.get("created_at", "")),
            failed_at=str(data.get("failed_at", "")),
            reason=str(data.get("reason", "")),
            seq=seq,
        )
