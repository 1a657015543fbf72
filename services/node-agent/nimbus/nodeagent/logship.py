"""Ships the per-instance log files (logcapture.py) to JetStream's NIMBUS_LOGS, in the background.

The files are the buffer: the call path only appends to them (through LogWriter) and never waits
on NATS. This loop wakes after every write (or every second), reads each file from its cursor (a
byte offset) to the end, and publishes its complete lines in batches of at most BATCH_BYTES on
`logs.<namespace>.<function>`: one message per instance per round, not one per line. A cursor
moves, and is persisted in logs/cursors.json, only after JetStream acknowledged the batch, so after
a kill -9 the next run ships from the last acknowledged offset: lines are never lost, and a batch
re-sent with the same offsets carries the same Nats-Msg-Id, which JetStream drops as a duplicate
(a batch that grew in between is sent again whole: a few duplicate lines, never a gap).
While NATS is down the loop backs off (up to MAX_BACKOFF_S) and the files keep growing.

A file is deleted once its instance is gone (the writer says so; at start every file is a
previous run's) and every byte of it was shipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Mapping
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
    message = str(rec.get("message", ""))[: _CUT_CHARS]
    rec = {**rec, "message": message + f" [nimbus] line cut to {_CUT_CHARS} characters to ship it"}
    return json.dumps(rec, ensure_ascii=False).encode() + b"\n"


def batches(node_id: str, instance_id: str, start: int, chunk: bytes) -> list[Batch]:
    """The messages for one chunk of whole lines of an instance's file: its records grouped by
    function (one group, but for records of a sandbox not yet given one, which are skipped), each
    with a message id that is the same whenever this chunk is sent again. Pure."""
    groups: dict[str, list[bytes]] = {}
    for line in chunk.splitlines(keepends=True):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        ns, fn = rec.get("namespace"), rec.get("function")
        if not (isinstance(ns, str) and isinstance(fn, str) and _TOKEN.fullmatch(ns) and _TOKEN.fullmatch(fn)):
            continue
        groups.setdefault(logstream.subject(ns, fn), []).append(_fit(line, rec))
    base = f"{node_id}/{instance_id}/{start}-{start + len(chunk)}"
    return [
        Batch(subject, b"".join(lines), base if i == 0 else f"{base}/{i}")
        for i, (subject, lines) in enumerate(sorted(groups.items()))
    ]


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
    def __init__(self, logs_dir: Path, writer: WrittenLogs, publisher: Publisher, node_id: str, clock: Clock) -> None:
        self._dir = logs_dir
        self._writer = writer
        self._publisher = publisher
        self._node_id = node_id
        self._clock = clock
        self._cursors: dict[str, int] = {}
        self._loaded = False

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
            try:
                await self.ship()
                backoff = 0.0
            except Exception as err:
                backoff = next_backoff(backoff)
                log.warning("shipping function logs failed; retrying", extra=kv(error=str(err), retry_s=backoff))
                await self._clock.sleep(backoff)

    async def ship(self) -> int:
        """One round over every file; how many messages were published. Raises Unavailable when
        NATS is, after keeping what was acknowledged before."""
        if not self._loaded:
            self._cursors = await asyncio.to_thread(self._load_cursors)
            self._loaded = True
        sent = 0
        for instance_id, size in await asyncio.to_thread(self._sizes):
            offset = self._cursors.get(instance_id, 0)
            if offset > size:  # not the file the cursor was for
                offset = 0
            while offset < size:
                chunk = await asyncio.to_thread(self._read, instance_id, offset, size)
                if not chunk:
                    break  # a line still being written
                for batch in batches(self._node_id, instance_id, offset, chunk):
                    await self._publisher.publish(batch.subject, batch.data, batch.msg_id)
                    sent += 1
                offset += len(chunk)
                self._cursors[instance_id] = offset
                await asyncio.to_thread(self._save_cursors, dict(self._cursors))
            if offset >= size and self._writer.finished(instance_id):
                await asyncio.to_thread(self._forget, instance_id)
        return sent

    # -- files (called through asyncio.to_thread) ------------------------------------------------

    def _sizes(self) -> list[tuple[str, int]]:
        out = []
        for path in self._dir.glob(f"*{_SUFFIX}"):
            with contextlib.suppress(OSError):
                out.append((path.name[: -len(_SUFFIX)], path.stat().st_size))
        return out

    def _read(self, instance_id: str, offset: int, size: int) -> bytes:
        with open(self._dir / f"{instance_id}{_SUFFIX}", "rb") as f:
            f.seek(offset)
            data = f.read(min(size - offset, BATCH_BYTES * 4))
        return data[: complete_lines(data)]

    def _forget(self, instance_id: str) -> None:
        (self._dir / f"{instance_id}{_SUFFIX}").unlink(missing_ok=True)
        if self._cursors.pop(instance_id, None) is not None:
            self._save_cursors(dict(self._cursors))

    def _load_cursors(self) -> dict[str, int]:
        try:
            return parse_cursors((self._dir / CURSORS_FILE).read_text())
        except OSError:
            return {}

    def _save_cursors(self, cursors: Mapping[str, int]) -> None:
        tmp = self._dir / f".{CURSORS_FILE}.tmp"
        tmp.write_text(json.dumps(cursors))
        os.replace(tmp, self._dir / CURSORS_FILE)
