"""A function's async settings, as Lambda's event invoke config: retries, event age, destinations.

api writes it to etcd (keys.event_config) and the invokers watch it. Unset numbers (None) take the
cluster's defaults (NIMBUS_ASYNC_MAX_RETRIES, NIMBUS_ASYNC_MAX_EVENT_AGE_S).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from nimbus.common.errors import InvalidArgument
from nimbus.common.triggers import check_subject
from nimbus.common.validation import check_name

MAX_RETRIES = (0, 5)
MAX_EVENT_AGE_S = (60, 21600)


@dataclass(frozen=True, slots=True)
class Destination:
    """Another function of the same namespace (invoked asynchronously), or a subject of the same
    namespace (the user's name: `tenant.<namespace>.<subject>` on the wire, where that namespace's
    subject triggers and NATS clients see it)."""

    function: str = ""
    subject: str = ""

    def __bool__(self) -> bool:
        return bool(self.function or self.subject)


@dataclass(frozen=True, slots=True)
class EventConfig:
    namespace: str
    function: str
    max_retries: int | None = None
    max_event_age_s: int | None = None
    on_success: Destination = field(default_factory=Destination)
    on_failure: Destination = field(default_factory=Destination)
    updated_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> EventConfig:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            namespace=str(data["namespace"]),
            function=str(data["function"]),
            max_retries=data.get("max_retries"),
            max_event_age_s=data.get("max_event_age_s"),
            on_success=Destination(**(data.get("on_success") or {})),
            on_failure=Destination(**(data.get("on_failure") or {})),
            updated_at=str(data.get("updated_at", "")),
        )


def check_destination(dest: Destination, field_name: str) -> None:
    if dest.function and dest.subject:
        raise InvalidArgument(f"{field_name}: set either function or subject, not both")
    if dest.function:
        check_name(dest.function, f"{field_name}.function")
    if dest.subject:
        check_subject(dest.subject, f"{field_name}.subject", wildcards=False)


def check_event_config(config: EventConfig) -> None:
    if (
        config.max_retries is not None
        and not MAX_RETRIES[0] <= config.max_retries <= MAX_RETRIES[1]
    ):
        raise InvalidArgument(
            f"max_retries: {config.max_retries} is out of range; "
            f"it must be between {MAX_RETRIES[0]} and {MAX_RETRIES[1]}"
        )
    if (
        config.max_event_age_s is not None
        and not MAX_EVENT_AGE_S[0] <= config.max_event_age_s <= MAX_EVENT_AGE_S[1]
    ):
        raise InvalidArgument(
            f"max_event_age_s: {config.max_event_age_s} is out of range; it must be between "
            f"{MAX_EVENT_AGE_S[0]} and {MAX_EVENT_AGE_S[1]}"
        )
    check_destination(config.on_success, "on_success")
    check_destination(config.on_failure, "on_failure")
