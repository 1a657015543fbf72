"""`nimbus usage` and `nimbus metrics`: what they ask the SDK and what they print."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from nimbus.cli.main import main
from nimbus.cli.metering import metrics_text, usage_text

USAGE = {
    "rows": [
        {
            "namespace": "acme",
            "function": "hello",
            "version": "$LATEST",
            "day": "2026-11-01",
            "requests": "12",
            "gb_seconds": 0.375,
            "billed_mb_ms": "384000",
        },
        {
            "namespace": "acme",
            "function": "hello",
            "version": "2",
            "day": "2026-11-02",
            "requests": "1",
            "gb_seconds": 0.000125,
            "billed_mb_ms": "128",
        },
    ],
    "from": "2026-11-01",
    "to": "2026-11-27",
    "total_requests": "13",
    "total_gb_seconds": 0.375125,
    "total_billed_mb_ms": "384128",
}


def test_usage_table_has_a_total_line() -> None:
    lines = usage_text(USAGE).splitlines()
    assert lines[0] == "usage 2026-11-01 .. 2026-11-27 (UTC days)"
    assert lines[1].split() == ["FUNCTION", "VERSION", "DAY", "REQUESTS", "GB-S"]
    assert lines[2].split() == ["hello", "$LATEST", "2026-11-01", "12", "0.375000"]
    assert lines[3].split() == ["hello", "2", "2026-11-02", "1", "0.000125"]
    assert lines[4].split() == ["TOTAL", "13", "0.375125"]
    assert len(lines) == 5


def test_usage_without_rows() -> None:
    assert (
        usage_text({"from": "2026-11-01", "to": "2026-11-27"})
        == "no usage from 2026-11-01 .. 2026-11-27"
    )


def bucket(start: str, **fields: Any) -> dict[str, Any]:
    return {"start": start, **fields}


def test_metrics_table_per_minute() -> None:
    text = metrics_text(
        [
            bucket("2026-11-27T10:58:00.000Z"),
            bucket(
                "2026-11-27T10:59:00.000Z",
                invocations="5",
                errors="1",
                throttles="2",
                cold_starts="1",
                duration_p50_ms=4.25,
                duration_p90_ms=9.5,
                duration_p99_ms=120.0,
                max_memory_used_mb="41",
            ),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == [
        "MINUTE(UTC)",
        "CALLS",
        "ERRORS",
        "THROTTLES",
        "COLD",
        "P50_MS",
        "P90_MS",
        "P99_MS",
        "MAX_MB",
    ]
    # Zero fields are absent from proto3 JSON: an empty minute shows zeros and dashes.
    assert lines[1].split() == ["10:58", "0", "0", "0", "0", "-", "-", "-", "-"]
    assert lines[2].split() == ["10:59", "5", "1", "2", "1", "4.2", "9.5", "120.0", "41"]


def test_metrics_over_midnight_shows_the_day() -> None:
    lines = metrics_text(
        [bucket("2026-11-27T23:59:00.000Z"), bucket("2026-11-28T00:00:00.000Z")]
    ).splitlines()
    assert lines[1].split()[:2] == ["11-27", "23:59"]
    assert lines[2].split()[:2] == ["11-28", "00:00"]


class FakeClient:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def get_usage_report(self, from_: str | None = None, to: str | None = None) -> dict[str, Any]:
        self.calls.append(("usage", from_, to))
        return USAGE

    def get_metrics(self, name: str, minutes: int | None = None) -> dict[str, Any]:
        self.calls.append(("metrics", name, minutes))
        return {"buckets": [bucket("2026-11-27T10:59:00.000Z", invocations="3")]}

    def close(self) -> None:
        pass


def run(
    argv: list[str], client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    monkeypatch.setattr("nimbus.cli.main.Client", lambda config: client)
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, env={"NIMBUS_API_KEY": "k"}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_usage_command(monkeypatch: pytest.MonkeyPatch) -> None:
    c = FakeClient()
    code, out, _ = run(["usage", "--from", "2026-11-01", "--to", "2026-11-27"], c, monkeypatch)
    assert code == 0 and c.calls == [("usage", "2026-11-01", "2026-11-27")]
    assert out.splitlines()[-1].split() == ["TOTAL", "13", "0.375125"]
    code, out, _ = run(["usage", "--json"], c, monkeypatch)
    assert code == 0 and c.calls[-1] == ("usage", None, None)
    assert json.loads(out) == USAGE


def test_metrics_command(monkeypatch: pytest.MonkeyPatch) -> None:
    c = FakeClient()
    code, out, _ = run(["metrics", "hello", "--minutes", "15"], c, monkeypatch)
    assert code == 0 and c.calls == [("metrics", "hello", 15)]
    assert out.splitlines()[1].split()[:2] == ["10:59", "3"]
    code, out, _ = run(["metrics", "hello", "--json"], c, monkeypatch)
    assert c.calls[-1] == ("metrics", "hello", None)
    assert json.loads(out)["buckets"][0]["invocations"] == "3"


@pytest.mark.parametrize("minutes", ["0", "1441", "ten"])
def test_metrics_minutes_out_of_range_is_a_usage_error(
    minutes: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = FakeClient()
    code, _, err = run(["metrics", "hello", "--minutes", minutes], c, monkeypatch)
    assert code == 2 and "--minutes" in err and c.calls == []
