"""Function output shown to people, such that no line a function prints can pass for one of the
platform's own (START/END/REPORT, error notes) or rewrite what a terminal shows around it.

A log record's `stream` says whose a line is; these helpers keep that visible where only text
travels: control characters (ESC for ANSI sequences, CR, backspace, C1 codes) and the Unicode
bidirectional overrides are written as escapes, and in the plain-text log tail a function's line
that starts like a platform line is marked with its stream.
"""

from __future__ import annotations

import re

# How the platform's own lines begin (nimbus.nodeagent.spec and logcapture).
PLATFORM_PREFIXES = (
    "START RequestId:",
    "END RequestId:",
    "REPORT RequestId:",
    "RequestId:",
    "[nimbus]",
)

# C0 controls but tab, DEL, C1 controls, and the bidi embeddings, overrides and isolates.
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """The text with every character that could move the cursor or restyle a terminal escaped."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape, text)


def function_line(text: str, stream: str) -> str:
    """A line the function printed, as plain text beside the platform's lines: escaped, and
    marked `(stdout) ` or `(stderr) ` when it starts like a platform line."""
    text = escape_controls(text)
    if text.startswith(PLATFORM_PREFIXES):
        return f"({stream}) {text}"
    return text
