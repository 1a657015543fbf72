"""Event triggers of a function: the record api writes to etcd and the
invokers watch, and its checks.

A trigger is one of
  timer    `schedule` is a cron expression or `@every <duration>` (nimbus.common.schedule)
  subject  each message on the NATS `subject` of the trigger's namespace invokes the function
           asynchronously; the subject is the user's name, `tenant.<namespace>.<subject>` on the
           wire (nimbus.common.subjects), so it never matches another namespace's or the
           platform's subjects
  http     the function answers the public URL /fn/{namespace}/{name} (no API key); one per
           function. Its `payload_format` is the event and response shape: "1.0" (API Gateway
           REST proxy; triggers stored before the field existed have it) or "2.0" (HTTP API /
           function URL)
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from enum import StrEnum

from nimbus.common import schedule as schedules
from nimbus.common.errors import InvalidArgument
from nimbus.common.model import LATEST, _load

# A user's subject is relative to its namespace, so it cannot reach these anyway; they are refused
# because a user who writes them means the platform's or the wire's subjects (`tenant.` starts
# every tenant subject on the wire: give `orders.created`, not `tenant.<ns>.orders.created`).
RESERVED_SUBJECT_PREFIXES = ("nimbus.", "$", "_INBOX.", "tenant.")
MAX_SUBJECT_LEN = 256
HTTP_PATH_PREFIX = "/fn/"

_TOKEN = re.compile(r"[A-Za-z0-9_\-:=+@~%!^&()\[\]{}|<>\"',;?#]+|\*|>")
_ALIAS = re.compile(r"(?!^\d+$)[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_VERSION = re.compile(r"[1-9]\d{0,9}")


class TriggerType(StrEnum):
    TIMER = "timer"
    SUBJECT = "subject"
    HTTP = "http"


class PayloadFormat(StrEnum):
    """The shape of an http trigger's events and of the answers it reads (issue 24.3)."""

    REST = "1.0"  # API Gateway REST proxy integration
    HTTP_API = "2.0"  # API Gateway HTTP API and Lambda function URLs


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    trigger_id: str
    namespace: str
    function: str
    type: str
    schedule: str = ""
    subject: str = ""
    qualifier: str = ""
    created_at: str = ""
    # http triggers only: "1.0" or "2.0"; records stored before it existed read as "" (1.0).
    payload_format: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> TriggerRecord:
        return _load(cls, raw)

    @property
    def format(self) -> PayloadFormat:
        """An http trigger's payload format (1.0 when none was stored)."""
        return PayloadFormat(self.payload_format or PayloadFormat.REST)

    @property
    def url(self) -> str:
        return http_path(self.namespace, self.function) if self.type == TriggerType.HTTP else ""


def http_path(namespace: str, name: str) -> str:
    return f"{HTTP_PATH_PREFIX}{namespace}/{name}"


def check_subject(subject: str, field: str = "subject", *, wildcards: bool = True) -> None:
    """A subject of the caller's namespace a user may subscribe to (wildcards allowed) or publish
    to (not), as the user names it (without the namespace)."""
    if not subject:
        raise InvalidArgument(f"{field}: required, e.g. 'orders.created'")
    if len(subject) > MAX_SUBJECT_LEN:
        raise InvalidArgument(
            f"{field}: {len(subject)} characters, over the limit of {MAX_SUBJECT_LEN}"
        )
    if subject.startswith(RESERVED_SUBJECT_PREFIXES):
        raise InvalidArgument(
            f"{field}: {subject!r} is reserved (subjects starting "
            f"with {', '.join(RESERVED_SUBJECT_PREFIXES)})"
        )
    tokens = subject.split(".")
    for i, token in enumerate(tokens):
        if not _TOKEN.fullmatch(token):
            raise InvalidArgument(
                f"{field}: {subject!r} is not a NATS subject: "
                "tokens separated by '.', no spaces, none empty"
            )
        if token in ("*", ">") and not wildcards:
            raise InvalidArgument(f"{field}: {subject!r} must not contain wildcards ('*', '>')")
        if token == ">" and i != len(tokens) - 1:
            raise InvalidArgument(f"{field}: '>' may only be the last token of {subject!r}")


def check_qualifier(qualifier: str, field: str = "qualifier") -> None:
    if qualifier in ("", LATEST) or _VERSION.fullmatch(qualifier) or _ALIAS.fullmatch(qualifier):
        return
    raise InvalidArgument(
        f"{field}: {qualifier!r} is neither $LATEST, a version number nor an alias name"
    )


def check_payload_format(payload_format: str) -> PayloadFormat:
    """An http trigger's payload format; none given is 1.0."""
    try:
        return PayloadFormat(payload_format or PayloadFormat.REST)
    except ValueError:
        raise InvalidArgument(
            f"payload_format: {payload_format!r} is not a payload format; use 1.0 or 2.0"
        ) from None


def check_trigger(
    type_: str, schedule: str, subject: str, qualifier: str, payload_format: str = ""
) -> TriggerType:
    """The whole request; every message names the field. Returns the parsed type."""
    try:
        kind = TriggerType(type_)
    except ValueError:
        raise InvalidArgument(
            f"type: {type_!r} is not a trigger type; use timer, subject or http"
        ) from None
    check_qualifier(qualifier)
    if kind != TriggerType.HTTP and payload_format:
        raise InvalidArgument("payload_format: only an http trigger has one")
    if kind == TriggerType.TIMER:
        if subject:
            raise InvalidArgument("subject: only a subject trigger has one")
        try:
            schedules.parse(schedule)
        except ValueError as err:
            raise InvalidArgument(f"schedule: {err}") from None
    elif kind == TriggerType.SUBJECT:
        if schedule:
            raise InvalidArgument("schedule: only a timer trigger has one")
        check_subject(subject)
    else:
        if schedule:
            raise InvalidArgument("schedule: only a timer trigger has one")
        if subject:
            raise InvalidArgument("subject: only a subject trigger has one")
        check_payload_format(payload_format)
    return kind
