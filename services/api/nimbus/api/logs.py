"""Function logs: query (GetLogs) and follow (TailLogs) a function's lines
in JetStream's log stream of its namespace (NIMBUS_LOGS_<namespace>).

The node-agents publish each function's records on `logs.<namespace>.<function>` in batches (a
message is JSON lines, nimbus.common.logstream). A query reads the function's messages from
`since` on, keeps the records that match, and answers the oldest `limit` of them, oldest first,
saying when more matched. Records are shipped within about a second of being printed, so a query
stops reading at messages stored UNTIL_SLACK_S after `until`. The caller only ever sees functions of
its own namespace: the subject is built from its key's namespace, and an unknown function is 404.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from nimbus.common import logstream
from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import DeadlineExceeded, InvalidArgument, NotFound, Unavailable
from nimbus.common.model import FunctionRecord

DEFAULT_WINDOW_S = 3600.0
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
UNTIL_SLACK_S = 60.0
# How often a tail checks that its function still exists (and the server is not draining).
TAIL_CHECK_S = 5.0
# A query that reads longer than this is refused with advice (the stream may hold a GB).
READ_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class LogLine:
    timestamp: str
    request_id: str
    stream: str
    message: str
    version: str


@dataclass(frozen=True, slots=True)
class LogQuery:
    since: str  # the record format's timestamps (iso(): ms, Z), so they compare as strings
    until: str  # "" = no end
    request_id: str
    limit: int


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One message of the stream: its store time (epoch s) and its JSON-lines body."""

    stored_at: float
    data: bytes


class LogStore(Protocol):
    def read(self, subject: str, since: float) -> AsyncIterator[StoredBatch]:
        """The subject's messages stored from `since` on, up to the last one there is now."""
        ...

    def follow(self, subject: str, since: float | None) -> AsyncIterator[StoredBatch | None]:
        """The subject's messages from `since` on (None: only new ones), forever; None now and
        then (about every second) while none arrive, so the caller can look around."""
        ...


class FunctionLookup(Protocol):
    async def get(self, who: Principal, name: str) -> FunctionRecord: ...


def parse_time(field: str, text: str) -> float:
    """RFC 3339 (e.g. 2026-01-02T03:04:05Z or with an offset) as epoch seconds; InvalidArgument."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidArgument(
            f"{field}: {text!r} is not an RFC 3339 time such as 2026-01-02T03:04:05Z"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidArgument(f"{field}: {text!r} needs a time zone, e.g. a trailing Z for UTC")
    return parsed.astimezone(UTC).timestamp()


def make_query(now: float, request_id: str, since: str, until: str, limit: int) -> LogQuery:
    """The query with defaults filled in (the last hour, 1000 lines). Pure."""
    if limit < 0 or limit > MAX_LIMIT:
        raise InvalidArgument(
            f"limit: {limit} must be between 1 and {MAX_LIMIT} (0 means {DEFAULT_LIMIT})"
        )
    start = parse_time("since", since) if since else now - DEFAULT_WINDOW_S
    end = parse_time("until", until) if until else None
    if end is not None and end < start:
        raise InvalidArgument(f"until: {until!r} is before since")
    return LogQuery(
        iso(start), iso(end) if end is not None else "", request_id, limit or DEFAULT_LIMIT
    )


def matching(data: bytes, request_id: str, since: str, until: str) -> list[LogLine]:
    """The records of one message that match. Records that do not parse are skipped. Pure."""
    out = []
    for raw in data.splitlines():
        try:
            rec = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        ts = str(rec.get("ts", ""))
        if ts < since or (until and ts > until):
            continue
        rid = str(rec.get("request_id", ""))
        if request_id and rid != request_id:
            continue
        out.append(
            LogLine(
                ts,
                rid,
                str(rec.get("stream", "")),
                str(rec.get("message", "")),
                str(rec.get("version", "")),
            )
        )
    return out


def oldest(lines: list[LogLine], limit: int) -> tuple[list[LogLine], bool]:
    """The oldest `limit` lines, oldest first (stable: lines of one instance keep their order),
    and whether any were left out. Pure."""
    ordered = sorted(lines, key=lambda line: line.timestamp)
    return ordered[:limit], len(ordered) > limit


class LogsApi:
    def __init__(self, functions: FunctionLookup, store: LogStore, clock: Clock) -> None:
        self._functions = functions
        self._store = store
        self._clock = clock
        self._closing = asyncio.Event()

    async def get(
        self, who: Principal, name: str, request_id: str, since: str, until: str, limit: int
    ) -> tuple[list[LogLine], bool]:
        """(lines oldest first, truncated)."""
        query = make_query(self._clock.now(), request_id, since, until, limit)
        record = await self._functions.get(who, name)
        subject = logstream.subject(record.namespace, record.name)
        stop_after = parse_time("until", query.until) + UNTIL_SLACK_S if query.until else None
        found: list[LogLine] = []
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                async for batch in self._store.read(subject, parse_time("since", query.since)):
                    if stop_after is not None and batch.stored_at > stop_after:
                        break
                    found.extend(matching(batch.data, query.request_id, query.since, query.until))
                    # Batches come in store order, close to time order: once more than `limit`
                    # matched, the oldest `limit` are (all but a line or two) among them.
                    if len(found) > query.limit:
                        break
        except TimeoutError:
            raise DeadlineExceeded(
                f"reading the logs of {name} took over {READ_TIMEOUT_S:.0f} s; "
                "narrow the query with since and until"
            ) from None
        return oldest(found, query.limit)

    async def tail(
        self, who: Principal, name: str, request_id: str, since: str
    ) -> AsyncIterator[LogLine]:
        """New lines as they are stored, until the function is deleted (the stream ends) or the
        server drains (Unavailable: the client reconnects to another replica)."""
        start = parse_time("since", since) if since else None
        record = await self._functions.get(who, name)
        subject = logstream.subject(record.namespace, record.name)
        from_ts = iso(start) if start is not None else ""
        next_check = self._clock.monotonic() + TAIL_CHECK_S
        async for batch in self._store.follow(subject, start):
            if self._closing.is_set():
                raise Unavailable("this api replica is shutting down; reconnect to follow the log")
            if batch is not None:
                for line in matching(batch.data, request_id, from_ts, ""):
                    yield line
            if self._clock.monotonic() >= next_check:
                next_check = self._clock.monotonic() + TAIL_CHECK_S
                try:
                    await self._functions.get(who, name)
                except NotFound:
                    return

    def close(self) -> None:
        """Ends every open tail within about a second (SIGTERM: they must not hold the drain)."""
        self._closing.set()
