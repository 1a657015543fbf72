"""Function output: read from each sandbox's pipe, tagged with the request id, capped, persisted.

A sandbox's stdout and stderr share one pipe, so lines keep the order they were written in. The
shims flush before they send a reply frame, so when the reply arrives everything the call printed
is already in the pipe: `end()` drains it synchronously before the call is reported done, and no
line can slip into the next call. Output between calls (init, background threads) is recorded
with an empty request id. Each call keeps at most 256 KB; the rest is counted and replaced by one
visible truncation line.

Records are JSON lines in HOME/nodes/<node>/logs/<instance_id>.jsonl, appended in batches by one
background task (LogWriter.run) so the call path never waits on the disk:

    {"ts": "...Z", "instance_id": "...", "request_id": "...",
     "type": "output"|"platform", "message": "..."}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections import defaultdict
from pathlib import Path

from nimbus.common.clock import Clock, iso
from nimbus.common.logs import kv

log = logging.getLogger(__name__)

MAX_CALL_BYTES = 256 * 1024
TAIL_BYTES = 4096
# A runaway instance cannot fill the disk: its file stops growing here (with one last line saying so).
MAX_FILE_BYTES = 64 * 1024 * 1024
_FLUSH_INTERVAL_S = 0.2
_READ_CHUNK = 65536
# Reads per wakeup: a function printing in a tight loop must not keep the event loop in here.
_READS_PER_WAKEUP = 16


class LogWriter:
    """Appends records to per-instance files, batched, off the event loop."""

    def __init__(self, logs_dir: Path, clock: Clock) -> None:
        self._dir = logs_dir
        self._clock = clock
        self._pending: dict[str, list[bytes]] = defaultdict(list)
        self._sizes: dict[str, int] = {}
        self._wake = asyncio.Event()

    def append(self, instance_id: str, request_id: str, kind: str, messages: list[str]) -> None:
        ts = iso(self._clock.now())
        lines = self._pending[instance_id]
        for message in messages:
            record = {"ts": ts, "instance_id": instance_id, "request_id": request_id, "type": kind, "message": message}
            lines.append(json.dumps(record, ensure_ascii=False).encode() + b"\n")
        self._wake.set()

    async def run(self) -> None:
        """Runs for the agent's life; a failed write is logged and the batch dropped."""
        while True:
            await self._wake.wait()
            await self._clock.sleep(_FLUSH_INTERVAL_S)
            try:
                await self.flush()
            except Exception:
                log.exception("writing function logs failed")

    async def flush(self) -> None:
        self._wake.clear()
        batch, self._pending = self._pending, defaultdict(list)
        if batch:
            await asyncio.to_thread(self._write, batch)

    def _write(self, batch: dict[str, list[bytes]]) -> None:
        for instance_id, lines in batch.items():
            path = self._dir / f"{instance_id}.jsonl"
            size = self._sizes.get(instance_id, 0)
            if size >= MAX_FILE_BYTES:
                continue
            data = b"".join(lines)
            if size + len(data) >= MAX_FILE_BYTES:
                note = {"instance_id": instance_id, "type": "platform", "message": "[nimbus] log file limit reached"}
                data = data[: MAX_FILE_BYTES - size] + b"\n" + json.dumps(note).encode() + b"\n"
            with open(path, "ab") as f:
                f.write(data)
            self._sizes[instance_id] = size + len(data)


class OutputCapture:
    """One sandbox's output pipe, split into lines and attributed to the call in flight."""

    def __init__(self, fd: int, instance_id: str, writer: LogWriter) -> None:
        self._fd = fd
        self._instance_id = instance_id
        self._writer = writer
        self._request_id = ""
        self._partial = b""
        self._lines: list[str] = []
        self._kept = 0
        self._dropped = 0
        self._open = True
        asyncio.get_running_loop().add_reader(fd, self._read)

    def begin(self, request_id: str, header_line: str) -> None:
        self._read()  # output from before the call belongs to before the call
        self._segment_done()
        self._request_id = request_id
        self._lines = [header_line]
        self._writer.append(self._instance_id, request_id, "platform", [header_line])

    def end(self, footer_lines: list[str], *, tail: bool = False) -> bytes:
        """Closes the call's segment: everything it printed, then the footer. Its last 4 KB if asked."""
        self._read()
        self._segment_done(footer_lines)
        text = ("\n".join(self._lines) + "\n").encode() if tail else b""
        self._request_id, self._lines = "", []
        return text[-TAIL_BYTES:]

    def close(self) -> None:
        """Reads what is left (the sandbox is dead or dying) and closes the pipe."""
        if not self._open:
            return
        self._read()
        self._segment_done()
        self._open = False
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)

    def _read(self) -> None:
        if not self._open:
            return
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(self._fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError as err:
                log.warning("reading instance output failed", extra=kv(instance_id=self._instance_id, error=str(err)))
                chunk = b""
            if not chunk:  # EOF: the sandbox exited
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().remove_reader(self._fd)
                return
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        room = MAX_CALL_BYTES - self._kept
        if room <= 0:
            self._dropped += len(chunk)
            return
        if len(chunk) > room:
            self._dropped += len(chunk) - room
            chunk = chunk[:room]
        self._kept += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        if complete:
            messages = [line.decode(errors="replace") for line in complete]
            self._lines.extend(messages)
            self._writer.append(self._instance_id, self._request_id, "output", messages)

    def _segment_done(self, footer: list[str] | None = None) -> None:
        """Ends the current segment (a call, or the output between calls) and resets the cap."""
        if self._partial:
            message = self._partial.decode(errors="replace")
            self._partial = b""
            self._lines.append(message)
            self._writer.append(self._instance_id, self._request_id, "output", [message])
        platform = list(footer or [])
        if self._dropped:
            limit = MAX_CALL_BYTES // 1024
            note = f"[nimbus] output truncated: {self._dropped} bytes over the {limit} KB limit were dropped"
            platform.insert(0, note)
        if platform:
            self._lines.extend(platform)
            self._writer.append(self._instance_id, self._request_id, "platform", platform)
        self._kept = self._dropped = 0
