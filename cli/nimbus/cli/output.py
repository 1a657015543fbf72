"""Human output: the console streams and pure formatters (colour only when a stream is a tty).

The formatters take plain data and return text, so tests check them without a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
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

    def heading(self, text: str) -> str:
        return style(text, _BOLD, enabled=self.out_color)

    def ok(self, text: str) -> str:
        return style(text, _GREEN, enabled=self.out_color)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


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


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], *, color: bool = False) -> str:
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    out = [style(line(header), _BOLD, enabled=color)]
    out += [line(r) for r in rows]
    return "\n".join(out)
