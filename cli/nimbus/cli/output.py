"""Human output: the console streams and pure formatters (colour only when a stream is a tty).

The formatters take plain data and return text, so tests check them without a terminal.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from nimbus.client import InvokeResult, NimbusApiError, NimbusConnectionError

PROG = "nimbus"

_BOLD, _DIM, _RED, _GREEN, _YELLOW = "1", "2", "31", "32", "33"


def style(text: str, *codes: str, enabled: bool) -> str:
    if not enabled or not codes:
        return text
    return f"\x1b[{';'.join(codes)}m{text}\x1b[0m"


class Console:
    """stdout for results, stderr for everything else; a progress line only on a terminal."""

    def __init__(self, stdout: TextIO, stderr: TextIO, env: Mapping[str, str]) -> None:
        self.stdout = stdout
        self.stderr = stderr
        no_color = bool(env.get("NO_COLOR")) or env.get("TERM") == "dumb"
        self.out_tty = _isatty(stdout)
        self.err_tty = _isatty(stderr)
        self.out_color = self.out_tty and not no_color
        self.err_color = self.err_tty and not no_color
        self._progress_shown = False

    def print(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def print_json(self, value: Any, *, pretty: bool | None = None) -> None:
        self.print(render_json(value, pretty=self.out_tty if pretty is None else pretty))

    def write_bytes(self, data: bytes) -> None:
        """Writes bytes as they are, plus a newline when they do not end with one."""
        if not data.endswith(b"\n"):
            data += b"\n"
        buffer = getattr(self.stdout, "buffer", None)
        if buffer is not None:
            self.stdout.flush()
            buffer.write(data)
            buffer.flush()
        else:
            self.stdout.write(data.decode("utf-8", errors="replace"))

    def info(self, text: str) -> None:
        self.clear_progress()
        self.stderr.write(text + "\n")

    def warn(self, text: str) -> None:
        self.info(f"{PROG}: " + style("warning:", _YELLOW, enabled=self.err_color) + " " + text)

    def error(self, text: str) -> None:
        self.info(f"{PROG}: " + style("error:", _BOLD, _RED, enabled=self.err_color) + " " + text)

    def progress(self, text: str) -> None:
        if self.err_tty:
            self.stderr.write("\r\x1b[K" + style(text, _DIM, enabled=self.err_color))
            self.stderr.flush()
            self._progress_shown = True

    def clear_progress(self) -> None:
        if self._progress_shown:
            self.stderr.write("\r\x1b[K")
            self.stderr.flush()
            self._progress_shown = False

    def upload_progress(
        self, label: str, *, clock: Callable[[], float] = time.monotonic, width: int | None = None
    ) -> UploadProgress:
        """A progress display for an upload on stderr:
        a bar on a terminal, plain lines otherwise."""
        return UploadProgress(self, label, clock=clock, width=width)

    def heading(self, text: str) -> str:
        return style(text, _BOLD, enabled=self.out_color)

    def ok(self, text: str) -> str:
        return style(text, _GREEN, enabled=self.out_color)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- upload progress ---------------------------------------------------------------------------


class UploadProgress:
    """Follows an upload through `progress(sent, total)` calls (possibly from another thread).

    On a terminal one line is redrawn in place, at most ten times a second:
        uploading big  [=========>          ]  768.0 KiB / 1.5 MiB   50%  12.0 MiB/s  ETA 0s
    and `close()` replaces it with `uploaded 1.5 MiB in 0.2 s (7.5 MiB/s)`. When stderr is not a
    terminal (piped, CI logs), a plain line is written each time another 10 % has gone (and at
    100 %), so a log shows the upload moving without any control characters.
    """

    REDRAW_S = 0.1
    STEP_PERCENT = 10

    def __init__(
        self,
        console: Console,
        label: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        width: int | None = None,
    ) -> None:
        self.console = console
        self.width = width  # terminal columns; None asks the terminal at each redraw
        self.label = label
        self.tty = console.err_tty
        self._clock = clock
        self._lock = threading.Lock()
        self._start: float | None = None
        self._last_draw = float("-inf")
        self._next_step = self.STEP_PERCENT  # plain mode: the next percentage that earns a line
        self._closed = False
        self.sent = 0
        self.total = 0

    def __call__(self, sent: int, total: int) -> None:
        with self._lock:
            if self._closed:
                return  # a late report from the sending thread after an error
            now = self._clock()
            if self._start is None:
                self._start = now
            self.sent, self.total = sent, total
            elapsed = now - self._start
            if self.tty:
                if sent < total and now - self._last_draw < self.REDRAW_S:
                    return
                self._last_draw = now
                width = self.width or shutil.get_terminal_size((80, 24)).columns
                self.console.progress(
                    progress_bar_text(self.label, sent, total, elapsed, width=width)
                )
            else:
                percent = _percent(sent, total)
                if sent < total and percent < self._next_step:
                    return
                self._next_step = (percent // self.STEP_PERCENT + 1) * self.STEP_PERCENT
                self.console.info(progress_line_text(self.label, sent, total, elapsed))

    def close(self, *, done: bool = True) -> None:
        """Stops the display; on a terminal, `done` leaves a one-line summary of the upload."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self.console.clear_progress()
            if done and self.tty and self._start is not None:
                elapsed = self._clock() - self._start
                self.console.info(upload_summary_text(self.sent, elapsed))


def _percent(sent: int, total: int) -> int:
    return 100 if total <= 0 else min(100, sent * 100 // total)


def format_rate(bytes_per_s: float | None) -> str:
    if bytes_per_s is None:
        return "-"
    return format_size(int(bytes_per_s)) + "/s"


def _rate(sent: int, elapsed: float) -> float | None:
    return sent / elapsed if elapsed >= 0.05 and sent > 0 else None


def format_duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{math.ceil(seconds)}s"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# Room for the usual tail after the bar ("  12.5 MiB / 50.0 MiB  100%  waiting for the server" and a
# bit); a longer one is cut at the terminal's edge.
_TAIL_ROOM = 52


def progress_bar_text(label: str, sent: int, total: int, elapsed: float, *, width: int = 80) -> str:
    """The terminal line: label, bar, bytes sent / total, percent, rate and time left; at 100 % it
    says the client waits for the server's answer instead. Never wider than `width` - 1 columns."""
    percent = _percent(sent, total)
    rate = _rate(sent, elapsed)
    tail = f"  {format_size(sent)} / {format_size(total)}  {percent:3d}%"
    if sent >= total:
        tail += "  waiting for the server"
    elif rate:
        tail += f"  {format_rate(rate)}  ETA {format_duration((total - sent) / rate)}"
    # A bar width that does not change as the tail grows and shrinks; no bar on a narrow terminal.
    bar_width = min(40, width - 1 - len(label) - 4 - _TAIL_ROOM)
    if bar_width < 10:
        line = f"{label}{tail}"
    else:
        filled = bar_width if total <= 0 else min(bar_width, sent * bar_width // total)
        if filled >= bar_width:
            bar = "=" * bar_width
        elif filled == 0:
            bar = " " * bar_width
        else:
            bar = "=" * (filled - 1) + ">" + " " * (bar_width - filled)
        line = f"{label}  [{bar}]{tail}"
    return line if len(line) < width else line[: max(0, width - 2)] + "…"


def progress_line_text(label: str, sent: int, total: int, elapsed: float) -> str:
    """The plain line for logs: `uploading big: 768.0 KiB / 1.5 MiB (50%), 12.0 MiB/s`."""
    text = f"{label}: {format_size(sent)} / {format_size(total)} ({_percent(sent, total)}%)"
    rate = _rate(sent, elapsed)
    return text + (f", {format_rate(rate)}" if rate else "")


def upload_summary_text(sent: int, elapsed: float) -> str:
    rate = _rate(sent, elapsed)
    text = f"uploaded {format_size(sent)} in {elapsed:.1f} s"
    return text + (f" ({format_rate(rate)})" if rate else "")


# -- errors ------------------------------------------------------------------------------------


def api_error_text(err: NimbusApiError) -> str:
    """`<server message> (HTTP 404)`; the caller prefixes `nimbus: error: `."""
    return f"{err.message} (HTTP {err.status})"


def connection_error_text(err: NimbusConnectionError) -> str:
    text = f"cannot reach the Nimbus gateway at {err.endpoint}: {err.reason}"
    if err.refused:
        text += (
            "\n  is the cluster running? Start it with `make up` in the Nimbus checkout,"
            " or point --endpoint / NIMBUS_ENDPOINT at a running gateway"
        )
    return text


def function_error_text(result: InvokeResult) -> str:
    """`errorType: errorMessage` and the stack trace, from the function's error body."""
    payload = result.payload if isinstance(result.payload, dict) else None
    if payload is None:
        body = result.raw.decode("utf-8", errors="replace").strip()
        return f"{result.function_error or 'Error'}: {body}" if body else str(result.function_error)
    error_type = str(payload.get("errorType") or result.function_error or "Error")
    lines = [f"{error_type}: {payload.get('errorMessage', '')}".rstrip()]
    trace = payload.get("stackTrace")
    if isinstance(trace, str):
        trace = trace.splitlines()
    if isinstance(trace, list):
        for frame in trace:
            for line in str(frame).rstrip("\n").splitlines():
                lines.append("  " + line if not line.startswith(" ") else line)
    return "\n".join(lines)


def invoke_meta_text(result: InvokeResult) -> str:
    parts = [f"request id: {result.request_id or '-'}"]
    parts.append(f"cold start: {'yes' if result.cold_start else 'no'}")
    parts.append(f"billed: {result.billed_ms} ms" if result.billed_ms is not None else "billed: -")
    if result.executed_version:
        parts.append(f"version: {result.executed_version}")
    return "  ".join(parts)


# -- values ------------------------------------------------------------------------------------


def render_json(value: Any, *, pretty: bool) -> str:
    if pretty:
        return json.dumps(value, indent=2, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def format_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def as_int(value: Any) -> int | None:
    """proto3 JSON sends int64 as strings and leaves zero values out."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _or_dash(value: Any, unit: str = "") -> str:
    if value is None or value == "" or value == 0:
        return "-"
    return f"{value}{unit}"


# -- functions ---------------------------------------------------------------------------------


def function_summary(fn: Mapping[str, Any], *, detailed: bool = False) -> list[tuple[str, str]]:
    """(label, value) rows describing a function, in display order."""
    rows = [
        ("name", str(fn.get("name", ""))),
        ("runtime", _or_dash(fn.get("runtime"))),
        ("handler", _or_dash(fn.get("handler"))),
        ("memory", _or_dash(as_int(fn.get("memory_mb")), " MB")),
        ("timeout", _or_dash(as_int(fn.get("timeout_s")), " s")),
        ("code sha256", _or_dash(fn.get("code_sha256"))),
        ("code size", format_size(as_int(fn.get("code_size")))),
    ]
    if detailed:
        env = fn.get("env") or {}
        rows += [
            ("description", _or_dash(fn.get("description"))),
            ("namespace", _or_dash(fn.get("namespace"))),
            ("max concurrency", _or_dash(as_int(fn.get("max_concurrency")))),
            ("min instances", str(as_int(fn.get("min_instances")) or 0)),
            ("instance concurrency", str(as_int(fn.get("instance_concurrency")) or 1)),
            ("revision", _or_dash(fn.get("revision"))),
            ("created", _or_dash(fn.get("created_at"))),
            ("updated", _or_dash(fn.get("updated_at"))),
            ("env", "-" if not env else ", ".join(f"{k}={env[k]}" for k in sorted(env))),
        ]
    return rows


def render_rows(rows: Sequence[tuple[str, str]], *, indent: str = "  ") -> str:
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{indent}{label.ljust(width)}  {value}" for label, value in rows)


def function_table(fns: Sequence[Mapping[str, Any]], *, color: bool = False) -> str:
    header = ("NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "UPDATED")
    rows = [
        (
            str(fn.get("name", "")),
            _or_dash(fn.get("runtime")),
            _or_dash(fn.get("handler")),
            _or_dash(as_int(fn.get("memory_mb")), " MB"),
            _or_dash(as_int(fn.get("timeout_s")), " s"),
            _or_dash(fn.get("updated_at")),
        )
        for fn in sorted(fns, key=lambda f: str(f.get("name", "")))
    ]
    return render_table(header, rows, color=color)


def render_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, color: bool = False
) -> str:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [style(line(header), _BOLD, enabled=color)]
    out += [line(r) for r in rows]
    return "\n".join(out)
