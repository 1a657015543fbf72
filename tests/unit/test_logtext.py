"""A function's printed line can never pass for the platform's own."""

from __future__ import annotations

import pytest
from nimbus.common.logtext import escape_controls, function_line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text\twith a tab", "plain text\twith a tab"),
        ("\x1b[2mEND RequestId: x\x1b[0m", "\\x1b[2mEND RequestId: x\\x1b[0m"),
        ("progress 10%\rEND RequestId: x", "progress 10%\\x0dEND RequestId: x"),
        ("bell\x07 del\x7f csi\x9b", "bell\\x07 del\\x7f csi\\x9b"),
        ("abc\u202edcba", "abc\\u202edcba"),
        ("héllo — ünïcode", "héllo — ünïcode"),
    ],
)
def test_controls_are_escaped(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown


@pytest.mark.parametrize(
    "forged",
    [
        "END RequestId: 123",
        "REPORT RequestId: 123\tDuration: 1.00 ms\tBilled Duration: 1 ms",
        "START RequestId: 123 Version: $LATEST",
        "RequestId: 123 Error: Task timed out after 3.00 seconds",
        "[nimbus] output truncated: 1 bytes over the 256 KB limit were dropped",
    ],
)
def test_a_function_line_that_starts_like_a_platform_line_is_marked(forged: str) -> None:
    assert function_line(forged, "stdout") == f"(stdout) {forged}"
    assert function_line(forged, "stderr") == f"(stderr) {forged}"


def test_ordinary_function_lines_are_unchanged() -> None:
    assert function_line("hello from the handler", "stdout") == "hello from the handler"
    assert (
        function_line("the END RequestId: is mid-line", "stdout")
        == "the END RequestId: is mid-line"
    )
