"""Ships the per-instance log files (logcapture.py) to JetStream's log streams (one per namespace,
nimbus.common.logstream), in the background; each REPORT record also to NIMBUS_USAGE, for metering.

The files are the buffer: the call path only appends to them (through LogWriter) and never waits
on NATS. This loop wakes after every write (or every second), at most once per NIMBUS_LOG_SHIP_MS,
reads each file from its cursor (a byte offset) to the end, and publishes its complete lines in
batches of at most BATCH_BYTES on
`logs.<namespace>.<function>`: one message per instance per round, not one per line. A cursor
moves, and is persisted in logs/cursors.json, only after JetStream acknowledged the batch, so after
a kill -9 the next run ships from the last acknowledged offset: lines are never lost, and a batch
re-sent with the same offsets carries the same Nats-Msg-Id, which JetStream drops as a duplicate
(a batch that grew in between is sent again whole: a few duplicate lines, never a gap).
The cursors file is rewritten in place by one write of at most a page, which a kill -9 cannot tear
(the kernel copies a page whole or not at all); a longer one is replaced through a temporary file.
While NATS is down the loop backs off (up to MAX_BACKOFF_S) and the files keep growing.

A file is deleted once its instance is gone (the writer says so; at start every file is a
previous run's) and every byte of it was shipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nimbus.common import logstream
from nimbus.common.clock import Clock
from nimbus.common.logs import kv

log = logging.getLogger(__name__)

BATCH_BYTES = 512 * 1024
MAX_BACKOFF_S = 10.0
_IDLE_WAKE_S = 1.0
CURSORS_FILE = "cursors.json"
_SUFFIX = ".jsonl"
_CUT_CHARS = 64 * 1024
# The most a cursors file may hold to be rewritten in place (see the module docstring).
_PAGE_BYTES = 4096
# Subject tokens: namespace and function names already match it (validation.py); checked again
# because a record that names neither cannot be routed.
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


class Publisher(Protocol):
    async def publish(self, subject: str, data: bytes, msg_id: str) -> bool: ...


class WrittenLogs(Protocol):
    """The LogWriter, as the shipper sees it."""

    written: asyncio.Event

    def finished(self, instance_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Batch:
    subject: str
    data: bytes
    msg_id: str


def complete_lines(data: bytes, limit: int = BATCH_BYTES) -> int:
    """How many bytes of data to ship now: whole lines only, at most limit unless the first line
    alone is longer (it goes whole). Pure."""
    if len(data) <= limit:
        return data.rfind(b"\n") + 1
    cut = data.rfind(b"\n", 0, limit)
    return cut + 1 if cut >= 0 else data.find(b"\n") + 1


def _fit(line: bytes, rec: dict[str, object]) -> bytes:
    """A record line short enough for one NATS message (1 MB by default): its message cut if not."""
    if len(line) <= BATCH_BYTES:
        return line
    message = str(rec.get("message", ""))[:_CUT_CHARS]
    rec = {**rec, "message": message + f" [nimbus] line cut to {_CUT_CHARS} characters to ship it"}
    return json.dumps(rec, ensure_ascii=False).encode() + b"\n"


def batches(node_id: str, instance_id: str, start: int, chunk: bytes) -> list[Batch]:
    """The messages for one chunk of whole lines of an instance's file: its records grouped by
    function (one group, but for records of a sandbox not yet given one, which are skipped), each
    with a message id that is the same whenever this chunk is sent again. Pure."""
    lines = chunk.splitlines(keepends=True)
    groups: dict[str, list[bytes]] = {}
    # The REPORT records again, for metering (nimbus.common.logstream.USAGE_STREAM).
    usage: dict[str, list[bytes]] = {}
    # (namespace, function) → its subject, or "" when the names cannot be routed.
    subjects: dict[tuple[str, str], str] = {}
    for line, rec in zip(lines, _parse_lines(lines), strict=True):
        if not isinstance(rec, dict):
            continue
        ns, fn = rec.get("namespace"), rec.get("function")
        if not (isinstance(ns, str) and isinstance(fn, str)):
            continue
        subject = subjects.get((ns, fn))
        if subject is None:
            routable = _TOKEN.fullmatch(ns) and _TOKEN.fullmatch(fn)
            subject = subjects[(ns, fn)] = logstream.subject(ns, fn) if routable else ""
        if subject:
            groups.setdefault(subject, []).append(_fit(line, rec))
            if isinstance(rec.get("report"), dict):
                usage.setdefault(logstream.usage_subject(ns, fn), []).append(line)
    base = f"{node_id}/{instance_id}/{start}-{start + len(chunk)}"
    return [
        Batch(subject, b"".join(lines), base if i == 0 else f"{base}/{i}")
        for i, (subject, lines) in enumerate(sorted(groups.items()))
    ] + [
        Batch(subject, b"".join(lines), f"{base}/usage/{i}")
        for i, (subject, lines) in enumerate(sorted(usage.items()))
    ]


def _parse_lines(lines: list[bytes]) -> list[object]:
    """Each line's JSON value, None for a line that is not one. Parsed as one JSON array when every
    line is a value of its own (as the writer's lines are): a few times cheaper than line by line.
    A line that is not (cut short, or torn by a kill -9) makes the array invalid or its length
    differ, and then each line is parsed alone."""
    try:
        values = json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        values = None
    if isinstance(values, list) and len(values) == len(lines):
        return values
    out: list[object] = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append(None)
    return out


def next_backoff(current: float) -> float:
    return min(max(current * 2, 0.5), MAX_BACKOFF_S)


def parse_cursors(text: str) -> dict[str, int]:
    """The persisted cursors; anything unreadable counts as "nothing shipped yet". Pure."""
    try:
        raw = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, int) and v >= 0}


class LogShipper:
    def __init__(
        self,
        logs_dir: Path,
        writer: WrittenLogs,
        publisher: Publisher,
        node_id: str,
        clock: Clock,
        every_s: float = 0.0,
    ) -> None:
        self._dir = logs_dir
        self._every_s = every_s
        self._writer = writer
        self._publisher = publisher
        self._node_id = node_id
        self._clock = clock
        self._cursors: dict[str, int] = {}
        self._loaded = False
        # The cursors file, kept open to be rewritten in place, and its length.
        self._cursors_fd = -1
        self._cursors_len = 0

    async def run(self) -> None:
        """Runs for the agent's life; never raises but for cancellation."""
        backoff = 0.0
        while True:
            try:
                async with asyncio.timeout(_IDLE_WAKE_S):
                    await self._writer.written.wait()
            except TimeoutError:
                pass
            self._writer.written.clear()
            started = self._clock.monotonic()
            try:
                await self.ship()
                backoff = 0.0
            except Exception as err:
                backoff = next_backoff(backoff)
                log.warning(
                    "shipping function logs failed; retrying",
                    extra=kv(error=str(err), retry_s=backoff),
                )
                await self._clock.sleep(backoff)
                continue
            # A round wakes NATS, every meter replica and Redis on the same cores as the calls:
            # a round per every_s at most keeps that work in fewer, larger batches. The files hold
            # what is written meanwhile, so a kill -9 loses nothing by the wait.
            rest = started + self._every_s - self._clock.monotonic()
            if rest > 0:
                await self._clock.sleep(rest)

    async def ship(self) -> int:
        """One round over every file; how many messages were published. Raises Unavailable when
        NATS is, after keeping what was acknowledged before."""
        if not self._loaded:
            self._cursors = await asyncio.to_thread(self._load_cursors)
            self._loaded = True
        sent = 0
        # One thread hop finds every file and reads what each has to ship first.
        for instance_id, size, offset, chunk in await asyncio.to_thread(self._scan):
            while chunk:
                for batch in batches(self._node_id, instance_id, offset, chunk):
                    await self._publisher.publish(batch.subject, batch.data, batch.msg_id)
                    sent += 1
                offset += len(chunk)
                self._cursors[instance_id] = offset
                self._save_cursors()
                chunk = (
                    await asyncio.to_thread(self._read, instance_id, offset, size)
                    if offset < size
                    else b""
                )
            if offset >= size and self._writer.finished(instance_id):
                await asyncio.to_thread(
                    (self._dir / f"{instance_id}{_SUFFIX}").unlink, missing_ok=True
                )
                if self._cursors.pop(instance_id, None) is not None:
                    self._save_cursors()
        return sent

    # -- files -------------------------------------------------------------------------------------

    def _scan(self) -> list[tuple[str, int, int, bytes]]:
        """(instance id, size, offset to ship from, whole lines from there) of every file.
        Runs in a thread while the loop waits for it."""
        out = []
        for path in self._dir.glob(f"*{_SUFFIX}"):
            instance_id = path.name[: -len(_SUFFIX)]
            try:
                size = path.stat().st_size
            except OSError:
                continue
            offset = self._cursors.get(instance_id, 0)
            if offset > size:  # not the file the cursor was for
                offset = 0
            out.append(
                (
                    instance_id,
                    size,
                    offset,
                    self._read(instance_id, offset, size) if offset < size else b"",
                )
            )
        return out

    def _read(self, instance_id: str, offset: int, size: int) -> bytes:
        with open(self._dir / f"{instance_id}{_SUFFIX}", "rb") as f:
            f.seek(offset)
            data = f.read(min(size - offset, BATCH_BYTES * 4))
        return data[: complete_lines(data)]

    def _load_cursors(self) -> dict[str, int]:
        try:
            return parse_cursors((self._dir / CURSORS_FILE).read_text())
        except OSError:
            return {}

    def _save_cursors(self) -> None:
        """On the event loop: rewriting at most a page of a file in the page cache costs a few µs,
        less than the thread hop would. Padded with spaces (JSON allows them at the end) over a
        longer previous text, so one write leaves no stale tail."""
        data = json.dumps(self._cursors).encode()
        if len(data) <= _PAGE_BYTES:
            if self._cursors_fd < 0:
                self._cursors_fd = os.open(
                    self._dir / CURSORS_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666
                )
                self._cursors_len = os.fstat(self._cursors_fd).st_size
            if self._cursors_len <= _PAGE_BYTES:
                os.pwrite(self._cursors_fd, data.ljust(self._cursors_len), 0)
                self._cursors_len = max(self._cursors_len, len(data))
                return
        # Over a page (or shrinking from there): a new file, renamed over the old one.
        if self._cursors_fd >= 0:
            os.close(self._cursors_fd)
            self._cursors_fd = -1
        tmp = self._dir / f".{CURSORS_FILE}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self._dir / CURSORS_FILE)
