"""Function output: read from each sandbox's two pipes, tagged with the call and
stream, capped, persisted.

A sandbox's stdout and stderr are separate pipes, so every line keeps its stream ("stdout" or
"stderr"); Nimbus' own lines (START/END/REPORT, the truncation and timeout notes) carry the stream
"platform". Between the two pipes the order is the order the agent read them in: each pipe is read
as soon as it is readable, so lines written a few µs apart to different streams may swap, lines of
one stream never do. The shims flush before they send a reply frame, so when the reply arrives
everything the call printed is already in the pipes: `end()` drains them synchronously before the
call is reported done, and no line can slip into the next call. Output between calls (init,
background threads) is recorded with an empty request id. Each call keeps at most 256 KB of output
(both streams together); the rest is counted and replaced by one visible truncation line.

Records are JSON lines in HOME/nodes/<node>/logs/<instance_id>.jsonl, appended in batches by one
background task (LogWriter.run) so the call path never waits on the disk, in the format of
nimbus.common.logstream (the shipper, logship.py, sends the file's lines to JetStream as they are):

    {"ts": "...Z", "namespace": ..., "function": ..., "version": ..., "request_id": ...,
     "stream": "stdout"|"stderr"|"platform", "message": ..., "instance_id": ...}

and the REPORT line's record also has "report": {"duration_ms", "billed_ms", "memory_mb",
"max_memory_used_mb", "cold_start", "init_duration_ms", "error"}. A sandbox's output before it is
given a function (a pooled one's) has empty namespace and function, and is not shipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import json.encoder
import logging
import os
import select
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nimbus.common.clock import Clock, iso
from nimbus.common.logs import kv
from nimbus.common.logtext import function_line
from nimbus.nodeagent import spec as specs
from nimbus.nodeagent.spec import CallEnd, Report

log = logging.getLogger(__name__)

STDOUT, STDERR, PLATFORM = "stdout", "stderr", "platform"
MAX_CALL_BYTES = 256 * 1024
TAIL_BYTES = 4096
# A runaway instance cannot fill the disk:
# its file stops growing here (with one last line saying so).
MAX_FILE_BYTES = 64 * 1024 * 1024
_FLUSH_INTERVAL_S = 0.2
_READ_CHUNK = 65536
# Reads per wakeup: a function printing in a tight loop must not keep the event loop in here.
_READS_PER_WAKEUP = 16
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogSource:
    """Whose lines these are; known once the sandbox is given its function."""

    namespace: str = ""
    function: str = ""
    version: str = ""


# How json.dumps(..., ensure_ascii=False) writes a string (the C encoder): records are put
# together from pre-encoded parts, about ten times cheaper than dumping a dict at every line.
_enc = json.encoder.encode_basestring


class _Format:
    """The parts of an instance's records that do not change from line to line, encoded once."""

    __slots__ = ("source", "head", "tail")

    def __init__(self, instance_id: str, source: LogSource) -> None:
        self.source = source
        self.head = (
            f', "namespace": {_enc(source.namespace)}, "function": {_enc(source.function)}'
            f', "version": {_enc(source.version)}, "request_id": '
        )
        self.tail = f', "instance_id": {_enc(instance_id)}'

    def line(
        self, ts: str, request_id: str, stream: str, message: str, report: Report | None = None
    ) -> bytes:
        text = (
            '{"ts": '
            + _enc(ts)
            + self.head
            + _enc(request_id)
            + ', "stream": '
            + _enc(stream)
            + ', "message": '
            + _enc(message)
            + self.tail
        )
        if report is not None:
            text += ', "report": ' + _report_json(report)
        return (text + "}\n").encode()


def _report_json(r: Report) -> str:
    """json.dumps(dataclasses.asdict(r)), without asdict's deep copy of every field."""
    return (
        f'{{"duration_ms": {r.duration_ms!r}, "billed_ms": {r.billed_ms!r}'
        f', "memory_mb": {r.memory_mb!r}, "max_memory_used_mb": {r.max_memory_used_mb!r}'
        f', "cold_start": {"true" if r.cold_start else "false"}'
        f', "init_duration_ms": {r.init_duration_ms!r}, "error": {_enc(r.error)}'
        f', "runtime_duration_ms": {r.runtime_duration_ms!r}}}'
    )


def record(
    ts: str,
    instance_id: str,
    source: LogSource,
    request_id: str,
    stream: str,
    message: str,
    report: Report | None = None,
) -> bytes:
    """One JSON line of an instance's log file: the fields ts, namespace, function, version,
    request_id, stream, message, instance_id (and report) in that order, as json.dumps(...,
    ensure_ascii=False) writes them. Pure."""
    return _Format(instance_id, source).line(ts, request_id, stream, message, report)


class LogWriter:
    """Appends records to per-instance files, batched, off the event loop."""

    def __init__(self, logs_dir: Path, clock: Clock) -> None:
        self._dir = logs_dir
        self._clock = clock
        self._pending: dict[str, list[bytes]] = defaultdict(list)
        self._sizes: dict[str, int] = {}
        self._open: set[str] = set()
        self._writing: set[str] = set()
        self._formats: dict[str, _Format] = {}
        # The timestamp's whole seconds, formatted once per second.
        self._second = -1
        self._second_text = ""
        self._ms = -1
        self._ms_text = ""
        self._wake = asyncio.Event()
        # Set after every write, for the shipper.
        self.written = asyncio.Event()

    def opened(self, instance_id: str) -> None:
        self._open.add(instance_id)

    def closed(self, instance_id: str) -> None:
        self._open.discard(instance_id)
        self._formats.pop(instance_id, None)
        self._wake.set()

    def finished(self, instance_id: str) -> bool:
        """Whether the instance is gone and every line it printed is in its file."""
        return (
            instance_id not in self._open
            and instance_id not in self._pending
            and instance_id not in self._writing
        )

    def append(
        self,
        instance_id: str,
        source: LogSource,
        request_id: str,
        stream: str,
        messages: list[str],
        report: Report | None = None,
    ) -> None:
        """The messages as records; `report` goes with the last one."""
        fmt = self._formats.get(instance_id)
        if fmt is None or fmt.source is not source:
            fmt = self._formats[instance_id] = _Format(instance_id, source)
        ts = self._timestamp()
        lines = self._pending[instance_id]
        if len(messages) == 1:  # START, END, REPORT: every call's
            lines.append(fmt.line(ts, request_id, stream, messages[0], report))
        else:
            last = len(messages) - 1
            for i, message in enumerate(messages):
                lines.append(
                    fmt.line(ts, request_id, stream, message, report if i == last else None)
                )
        self._wake.set()

    def _timestamp(self) -> str:
        """clock.iso(now); the seconds part is cached, and the whole text for lines stamped within
        the same millisecond (a call's START, END and REPORT often are), as
        every line is stamped."""
        now = self._clock.now()
        second = int(now)
        ms = int(now * 1000)
        if ms == self._ms and second == self._second:
            return self._ms_text
        if second != self._second:
            self._second, self._second_text = second, iso(second).removesuffix(".000Z")
        self._ms, self._ms_text = ms, f"{self._second_text}.{ms % 1000:03d}Z"
        return self._ms_text

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
        if not batch:
            return
        self._writing = set(batch)
        try:
            await asyncio.to_thread(self._write, batch)
        finally:
            self._writing = set()
            for instance_id in batch:
                if instance_id not in self._open:
                    self._sizes.pop(instance_id, None)
                    self._formats.pop(instance_id, None)
            self.written.set()

    def _write(self, batch: dict[str, list[bytes]]) -> None:
        for instance_id, lines in batch.items():
            path = self._dir / f"{instance_id}.jsonl"
            size = self._sizes.get(instance_id, 0)
            if size >= MAX_FILE_BYTES:
                continue
            data = b"".join(lines)
            if size + len(data) >= MAX_FILE_BYTES:
                note = {
                    "instance_id": instance_id,
                    "stream": PLATFORM,
                    "message": "[nimbus] log file limit reached",
                }
                data = data[: MAX_FILE_BYTES - size] + b"\n" + json.dumps(note).encode() + b"\n"
            with open(path, "ab") as f:
                f.write(data)
            self._sizes[instance_id] = size + len(data)


class _Pipe:
    __slots__ = ("fd", "stream", "partial", "open")

    def __init__(self, fd: int, stream: str) -> None:
        self.fd = fd
        self.stream = stream
        self.partial = b""
        self.open = True


class _Platform(str):
    """A line of the platform's own among a segment's lines."""

    __slots__ = ()


class _Stderr(str):
    """A line the function wrote to stderr (plain str lines are its stdout)."""

    __slots__ = ()


def _tail_line(line: str) -> str:
    """A segment's line as the log tail shows it: the function's lines escaped and, where they
    start like a platform line, marked with their stream (nimbus.common.logtext)."""
    if type(line) is _Platform:
        return line
    return function_line(line, STDERR if type(line) is _Stderr else STDOUT)


class _Segment:
    """The output of one call, or of the time between calls; capped at MAX_CALL_BYTES."""

    __slots__ = ("request_id", "lines", "kept", "dropped")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.lines: list[str] = []
        self.kept = 0
        self.dropped = 0


class OutputCapture:
    """One sandbox's stdout and stderr pipes, split into lines and attributed to the call in flight.

    An instance that serves several calls at once cannot tell whose a line is: while more than one
    call is in flight, lines go with an empty request id (as output between calls does)."""

    def __init__(
        self,
        stdout_fd: int,
        stderr_fd: int,
        instance_id: str,
        writer: LogWriter,
        peak_memory: Callable[[], int | None] = lambda: None,
    ) -> None:
        self._instance_id = instance_id
        self._writer = writer
        self._peak_memory = peak_memory
        self._source = LogSource()
        self._pipes = (_Pipe(stdout_fd, STDOUT), _Pipe(stderr_fd, STDERR))
        self._calls: dict[str, _Segment] = {}
        self._between = _Segment("")
        self._closed = False
        # The open pipes, for _read_all.
        self._poll = select.poll()
        writer.opened(instance_id)
        loop = asyncio.get_running_loop()
        for pipe in self._pipes:
            loop.add_reader(pipe.fd, self._read, pipe)
            self._poll.register(pipe.fd, select.POLLIN)

    def assign(self, source: LogSource) -> None:
        """The function the sandbox was given: every later record names it."""
        self._source = source

    def begin(self, request_id: str, header_line: str) -> None:
        self._read_all()  # output from before the call belongs to before the call
        self._flush_partials()
        between = self._between
        if not self._calls and (between.lines or between.kept or between.dropped):
            self._close_segment(between)
            self._between = _Segment("")
        call = self._calls[request_id] = _Segment(request_id)
        call.lines.append(_Platform(header_line))
        self._writer.append(self._instance_id, self._source, request_id, PLATFORM, [header_line])

    def end(self, footer: CallEnd, *, tail: bool = False) -> bytes:
        """Closes the call's segment: everything it printed, then the
        footer. Its last 4 KB if asked.

        The REPORT line needs the sandbox's peak memory, a few-µs read; unless the tail is wanted
        now, it is read just after the reply has gone (still before the next call can begin)."""
        self._read_all()
        self._flush_partials()
        request_id, source = footer.request_id, self._source
        call = self._calls.pop(request_id, None) or _Segment(request_id)
        self._close_segment(call, footer.notes)
        end_line = specs.log_end_line(request_id)
        if not tail:
            self._writer.append(self._instance_id, source, request_id, PLATFORM, [end_line])
            asyncio.get_running_loop().call_soon(self._report, source, request_id, footer.report)
            return b""
        report = self._report(source, request_id, footer.report, end_line)
        text = (
            "\n".join(
                [*map(_tail_line, call.lines), end_line, specs.report_line(request_id, report)]
            )
            + "\n"
        ).encode()
        return text[-TAIL_BYTES:]

    def note(self, message: str) -> None:
        """A platform line outside any call (an init failure the runtime could not log)."""
        self._read_all()
        self._flush_partials()
        seg = self._target()
        seg.lines.append(_Platform(message))
        self._writer.append(self._instance_id, self._source, seg.request_id, PLATFORM, [message])

    def close(self) -> None:
        """Reads what is left (the sandbox is dead or dying) and closes the pipes."""
        if self._closed:
            return
        self._read_all()
        self._flush_partials()
        self._close_segment(self._between)
        self._closed = True
        for pipe in self._pipes:
            if pipe.open:
                self._stop_reading(pipe)
            os.close(pipe.fd)
        self._writer.closed(self._instance_id)

    def keep_peak_memory(self) -> None:
        """Reads the peak memory one last time, before the sandbox (and its cgroup) goes: a call
        that killed its instance is reported after that."""
        peak = self._peak_memory()
        self._peak_memory = lambda: peak

    def _report(self, source: LogSource, request_id: str, report: Report, *before: str) -> Report:
        peak = self._peak_memory()
        report = specs.with_peak_memory(report, -(-peak // _MB) if peak else 0)
        self._writer.append(
            self._instance_id,
            source,
            request_id,
            PLATFORM,
            [*before, specs.report_line(request_id, report)],
            report,
        )
        return report

    def _target(self) -> _Segment:
        if len(self._calls) == 1:
            return next(iter(self._calls.values()))
        return self._between

    def _read_all(self) -> None:
        """Reads what the pipes hold now. At a call's start and end they are usually empty: one
        poll says so, where a read on each would fail with EAGAIN."""
        ready = self._poll.poll(0)
        if ready:
            fds = {fd for fd, _ in ready}
            for pipe in self._pipes:
                if pipe.fd in fds:
                    self._read(pipe)

    def _read(self, pipe: _Pipe) -> None:
        if not pipe.open:
            return
        for _ in range(_READS_PER_WAKEUP):
            try:
                chunk = os.read(pipe.fd, _READ_CHUNK)
            except BlockingIOError:
                return
            except OSError as err:
                log.warning(
                    "reading instance output failed",
                    extra=kv(instance_id=self._instance_id, error=str(err)),
                )
                chunk = b""
            if not chunk:  # EOF: the sandbox exited
                self._stop_reading(pipe)
                return
            self._take(pipe, chunk)

    def _stop_reading(self, pipe: _Pipe) -> None:
        pipe.open = False
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(pipe.fd)
        self._poll.unregister(pipe.fd)

    def _take(self, pipe: _Pipe, chunk: bytes) -> None:
        seg = self._target()
        room = MAX_CALL_BYTES - seg.kept
        if room <= 0:
            seg.dropped += len(chunk)
            return
        if len(chunk) > room:
            seg.dropped += len(chunk) - room
            chunk = chunk[:room]
        seg.kept += len(chunk)
        data = pipe.partial + chunk
        *complete, pipe.partial = data.split(b"\n")
        if complete:
            messages = [line.decode(errors="replace") for line in complete]
            seg.lines.extend(messages if pipe.stream == STDOUT else map(_Stderr, messages))
            self._writer.append(
                self._instance_id, self._source, seg.request_id, pipe.stream, messages
            )

    def _flush_partials(self) -> None:
        """An unfinished line goes with the segment it was printed in, as a line of its own."""
        seg = self._target()
        for pipe in self._pipes:
            if pipe.partial:
                message = pipe.partial.decode(errors="replace")
                pipe.partial = b""
                seg.lines.append(message if pipe.stream == STDOUT else _Stderr(message))
                self._writer.append(
                    self._instance_id, self._source, seg.request_id, pipe.stream, [message]
                )

    def _close_segment(self, seg: _Segment, notes: tuple[str, ...] = ()) -> None:
        """The segment's truncation line (if it dropped output) and the platform's notes."""
        platform = list(notes)
        if seg.dropped:
            limit = MAX_CALL_BYTES // 1024
            note = (
                f"[nimbus] output truncated: {seg.dropped} bytes over the {limit} KB limit "
                "were dropped"
            )
            platform.insert(0, note)
        if platform:
            seg.lines.extend(map(_Platform, platform))
            self._writer.append(self._instance_id, self._source, seg.request_id, PLATFORM, platform)
        seg.kept = seg.dropped = 0
