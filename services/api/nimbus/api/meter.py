"""Metering: the REPORT record of every call, read from the NIMBUS_USAGE stream, becomes billed
MB-ms and a request per namespace, function, version and UTC day, and the call's counts and
duration in its function's per-minute metrics.

Exactly once, across replicas and kill -9: every api replica pulls from the one durable consumer,
the store applies a batch's REPORTs in one atomic step that skips request ids it has seen, and only
then are the messages acked. A batch lost between apply and ack comes back and changes nothing.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from nimbus.common.clock import Clock
from nimbus.common.errors import NimbusError

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_VERSION = re.compile(r"\$LATEST|[0-9]{1,9}")
# Fetch waits this long for a first message; a busy stream fills the batch at once.
FETCH_WAIT_S = 2.0
_BACKOFF_S = (0.2, 5.0)
# An unapplied batch comes back after this delay rather than the consumer's whole ack wait.
NAK_DELAY_S = 1.0


@dataclass(frozen=True, slots=True)
class Report:
    """One call's REPORT record, checked."""

    namespace: str
    function: str
    version: str
    request_id: str
    ts: datetime
    billed_ms: int
    memory_mb: int
    duration_ms: float
    max_memory_used_mb: int
    cold_start: bool
    init_duration_ms: float
    error: str

    @property
    def mb_ms(self) -> int:
        """What the call is billed: its billed time times its configured memory, exact."""
        return self.billed_ms * self.memory_mb

    @property
    def day(self) -> str:
        return self.ts.date().isoformat()

    @property
    def epoch_s(self) -> float:
        return self.ts.timestamp()


class BadRecord(ValueError):
    pass


def parse_ts(text: object) -> datetime:
    """An RFC 3339 time, as UTC; a time without an offset is refused rather than guessed."""
    if not isinstance(text, str):
        raise BadRecord(f"ts: expected a string, got {text!r}")
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise BadRecord(f"ts: {text!r} is not an RFC 3339 time") from None
    if ts.tzinfo is None:
        raise BadRecord(f"ts: {text!r} has no UTC offset")
    return ts.astimezone(UTC)


def _int(report: dict[str, object], name: str, default: int | None = None) -> int:
    value = report.get(name, default)
    # JSON has one number type: 120.0 is a fine whole number; True is not a number.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadRecord(f"report.{name}: expected a whole number >= 0, got {value!r}")
    return value


def _number(report: dict[str, object], name: str, default: float | None = None) -> float:
    value = report.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise BadRecord(f"report.{name}: expected a number >= 0, got {value!r}")
    return float(value)


def _str(record: dict[str, object], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = record.get(name)
    if (
        not isinstance(value, str)
        or not value
        or (pattern is not None and not pattern.fullmatch(value))
    ):
        raise BadRecord(f"{name}: {value!r} is not valid")
    return value


def report_of(record: dict[str, object]) -> Report:
    report = record.get("report")
    if not isinstance(report, dict):
        raise BadRecord("report: expected an object")
    request_id = _str(record, "request_id")
    if len(request_id) > 128:
        raise BadRecord("request_id: over 128 characters")
    error = report.get("error", "")
    cold = report.get("cold_start", False)
    if not isinstance(error, str) or not isinstance(cold, bool):
        raise BadRecord("report.error must be a string and report.cold_start a boolean")
    memory_mb = _int(report, "memory_mb")
    if memory_mb == 0:
        raise BadRecord("report.memory_mb: must be above 0")
    return Report(
        namespace=_str(record, "namespace", _NAME),
        function=_str(record, "function", _NAME),
        version=_str(record, "version", _VERSION),
        request_id=request_id,
        ts=parse_ts(record.get("ts")),
        billed_ms=_int(report, "billed_ms"),
        memory_mb=memory_mb,
        duration_ms=_number(report, "duration_ms"),
        max_memory_used_mb=_int(report, "max_memory_used_mb", 0),
        cold_start=cold,
        init_duration_ms=_number(report, "init_duration_ms", 0.0),
        error=error,
    )


def parse_reports(body: bytes) -> tuple[list[Report], int]:
    """The REPORT records of one message (JSON lines) and how many REPORT-looking lines were bad.
    Lines without a report object are other log output and are skipped unparsed."""
    reports: list[Report] = []
    bad = 0
    for line in body.splitlines():
        if b'"report"' not in line:
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise BadRecord("not an object")
            if "report" not in record:
                continue  # the word appeared inside a message
            reports.append(report_of(record))
        except ValueError:
            bad += 1
    return reports, bad


class Delivery(Protocol):
    data: bytes

    async def ack(self) -> None: ...
    async def nak(self, delay_s: float) -> None: ...


class ReportFeed(Protocol):
    async def fetch(self, batch: int, timeout_s: float) -> Sequence[Delivery]: ...


class MeterStore(Protocol):
    async def apply(self, reports: Sequence[Report]) -> int:
        """Applies each report whose request id is new, atomically per report; returns how many
        were new. Raises Unavailable when the store did not answer (some may have been applied)."""
        ...


class Meter:
    """The consumer loop of one replica; any number of replicas share the feed."""

    def __init__(self, feed: ReportFeed, store: MeterStore, clock: Clock, batch: int) -> None:
        self._feed = feed
        self._store = store
        self._clock = clock
        self._batch = batch
        self.applied = 0

    async def run(self) -> None:
        """Background task: never returns, never raises but CancelledError."""
        delay = _BACKOFF_S[0]
        while True:
            try:
                deliveries = await self._feed.fetch(self._batch, FETCH_WAIT_S)
                if deliveries:
                    await self.process(deliveries)
                delay = _BACKOFF_S[0]
            except Exception as err:
                message = (
                    err.message if isinstance(err, NimbusError) else f"{type(err).__name__}: {err}"
                )
                log.warning(
                    "metering paused, retrying",
                    extra={"fields": {"error": message, "retry_s": delay}},
                )
                await self._clock.sleep(delay)
                delay = min(delay * 2, _BACKOFF_S[1])

    async def process(self, deliveries: Sequence[Delivery]) -> int:
        """Applies the deliveries' REPORTs, then acks them all; returns how many were new."""
        reports: list[Report] = []
        bad = 0
        for d in deliveries:
            found, skipped = parse_reports(d.data)
            reports.extend(found)
            bad += skipped
        if bad:
            # A malformed record can never become valid; it is acked with its message.
            log.warning("bad REPORT records skipped", extra={"fields": {"count": bad}})
        try:
            applied = await self._store.apply(reports) if reports else 0
        except Exception:
            # Sooner than the ack wait; a cancelled task leaves them unacked instead.
            for d in deliveries:
                await d.nak(NAK_DELAY_S)
            raise
        for d in deliveries:
            await d.ack()
        self.applied += applied
        return applied
