"""`nimbus logs`: argument parsing, the line format (plain and coloured), the truncation hint, and
the resume logic of a reopened tail."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from nimbus.cli import logs
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError
from nimbus.cli.main import build_parser, main
from nimbus.cli.output import Console
from nimbus.client.tail import Resume

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("10m", "2027-01-15T07:50:00.000Z"),
        ("2h", "2027-01-15T06:00:00.000Z"),
        ("30s", "2027-01-15T07:59:30.000Z"),
        ("1d", "2027-01-14T08:00:00.000Z"),
        ("2026-01-02T03:04:05Z", "2026-01-02T03:04:05Z"),
        ("2026-01-02T03:04:05.5+02:00", "2026-01-02T03:04:05.5+02:00"),
    ],
)
def test_parse_since(text: str, want: str) -> None:
    assert logs.parse_since(text, NOW) == want


@pytest.mark.parametrize("text", ["10", "10x", "yesterday", "2026-01-02T03:04:05"])
def test_parse_since_refuses_what_it_cannot_place(text: str) -> None:
    with pytest.raises(UsageError, match="--since"):
        logs.parse_since(text, NOW)


LINES = [
    {
        "timestamp": "2027-01-15T07:59:00.001Z",
        "request_id": "0123456789ab",
        "stream": "platform",
        "message": "START RequestId: 0123456789ab Version: $LATEST",
        "version": "$LATEST",
    },
    {
        "timestamp": "2027-01-15T07:59:00.002Z",
        "request_id": "0123456789ab",
        "stream": "stdout",
        "message": "hi\n",
    },
    {
        "timestamp": "2027-01-15T07:59:00.003Z",
        "request_id": "0123456789ab",
        "stream": "stderr",
        "message": "oops",
    },
    {"timestamp": "2027-01-15T07:59:01.000Z", "stream": "stdout", "message": "between calls"},
]


def test_format_line_plain_and_coloured() -> None:
    plain = [logs.format_line(line, color=False) for line in LINES]
    assert plain == [
        "2027-01-15T07:59:00.001Z  01234567  platform  "
        "START RequestId: 0123456789ab Version: $LATEST",
        "2027-01-15T07:59:00.002Z  01234567  stdout    hi",
        "2027-01-15T07:59:00.003Z  01234567  stderr    oops",
        "2027-01-15T07:59:01.000Z  -         stdout    between calls",
    ]
    coloured = [logs.format_line(line, color=True) for line in LINES]
    assert coloured[0] == f"\x1b[2m{plain[0]}\x1b[0m"
    assert coloured[1] == plain[1]
    assert coloured[2] == f"\x1b[31m{plain[2]}\x1b[0m"


class FakeClient:
    def __init__(self, answer: dict[str, Any]) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def get_logs(self, name: str, **kw: Any) -> dict[str, Any]:
        self.calls.append({"name": name, **kw})
        return self.answer

    def close(self) -> None:
        pass


def run(
    argv: list[str], client: FakeClient, *, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(
        console=Console(out, err, env or {}),
        make_client=lambda: client,  # type: ignore[arg-type,return-value]
        json=args.json,
    )
    return logs.logs(ctx, args, clock=lambda: NOW), out.getvalue(), err.getvalue()


def test_logs_prints_plain_lines_when_piped_and_hints_at_truncation() -> None:
    client = FakeClient({"lines": LINES[:2], "truncated": True})
    code, out, err = run(
        ["logs", "fn", "--since", "10m", "--request-id", "r1", "--limit", "2"], client
    )
    assert code == 0
    assert (
        "\x1b[" not in out
        and out.splitlines()[1] == "2027-01-15T07:59:00.002Z  01234567  stdout    hi"
    )
    assert client.calls == [
        {"name": "fn", "request_id": "r1", "since": "2027-01-15T07:50:00.000Z", "limit": 2}
    ]
    assert (
        "more lines matched than the 2 shown" in err and "--since 2027-01-15T07:59:00.002Z" in err
    )


def test_logs_json_prints_one_object_per_line() -> None:
    code, out, err = run(["--json", "logs", "fn"], FakeClient({"lines": LINES[:1]}))
    assert (
        code == 0 and out.count("\n") == 1 and json.loads(out)["stream"] == "platform" and err == ""
    )


def test_logs_says_when_there_is_nothing() -> None:
    code, out, err = run(["logs", "fn"], FakeClient({}))
    assert code == 0 and out == "" and "no log lines for fn in the last hour" in err


@pytest.mark.parametrize(
    "argv", [["logs", "fn", "--limit", "0"], ["logs", "fn", "--limit", "x"], ["logs"]]
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    err = io.StringIO()
    assert main(argv, env={}, stdout=io.StringIO(), stderr=err) == 2


def test_limit_over_the_maximum_is_refused_before_any_call() -> None:
    client = FakeClient({})
    with pytest.raises(UsageError, match="--limit 10001"):
        run(["logs", "fn", "--limit", "10001"], client)
    assert client.calls == []


def test_resume_skips_what_was_yielded_before_a_reconnect() -> None:
    resume = Resume("2027-01-15T07:59:00.000Z")
    first = [{"timestamp": "2027-01-15T07:59:00.001Z", "message": m} for m in ("a", "b")]
    assert [resume.admit(line) for line in first] == [True, True]
    assert resume.since == "2027-01-15T07:59:00.001Z"
    # The reopened tail starts at that millisecond: a and b again, then a new line of it, then the
    # later ones.
    again = [
        *first,
        {"timestamp": "2027-01-15T07:59:00.001Z", "message": "c"},
        {"timestamp": "2027-01-15T07:59:00.002Z", "message": "a"},
    ]
    assert [resume.admit(line) for line in again] == [False, False, True, True]
    assert not resume.admit({"timestamp": "2027-01-15T07:58:00.000Z", "message": "old"})


def test_a_function_line_cannot_restyle_or_overwrite_the_columns() -> None:
    forged = {
        "timestamp": "2026-01-01T00:00:00.000Z",
        "request_id": "abcdef12-3456",
        "stream": "stdout",
        "message": "\r2026-01-01T00:00:00.000Z  abcdef12  platform  "
        "\x1b[2mEND RequestId: abcdef12\x1b[0m",
    }
    shown = logs.format_line(forged, color=True)
    assert "\r" not in shown and "\x1b" not in shown  # stdout lines are not styled at all
    assert "  stdout    \\x0d2026" in shown and "\\x1b[2mEND RequestId" in shown
