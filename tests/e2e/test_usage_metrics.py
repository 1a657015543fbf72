"""Metering end to end: calls run on the nodes, their REPORT records travel through NIMBUS_USAGE to
the api replicas' meter, and GET /v1/usage and GET /v1/functions/{name}/metrics (and `nimbus usage`,
`nimbus metrics`) show exactly what the REPORT lines in the function's log say; a throttled call,
which never reaches a node, shows in the throttles."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from support import Gateway, Response

from tests.support import until_sync

pytestmark = pytest.mark.timeout(300)

FN = """
import time

def handler(event, context):
    time.sleep(event.get("sleep", 0))
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
"""
REPORT = re.compile(
    r"^REPORT RequestId: (\S+)\tDuration: [0-9.]+ ms"
    r"\tBilled Duration: (\d+) ms\tMemory Size: (\d+) MB"
)


def window() -> str:
    # A day either side, so a run across UTC midnight still sees all its rows.
    today = datetime.now(UTC).date()
    return f"from={today - timedelta(days=1)}&to={today + timedelta(days=1)}"


def usage_rows(
    gw: Gateway, name: str, key: str | None = "default"
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    res = gw.request("GET", f"/v1/usage?{window()}", key=key)
    assert res.status == 200, res.body
    data = res.json()
    return [r for r in data.get("rows", []) if r["function"] == name], data


def report_lines(gw: Gateway, name: str) -> dict[str, tuple[int, int]]:
    res = gw.request("GET", f"/v1/functions/{name}/logs?limit=1000")
    assert res.status == 200, res.body
    found = {}
    for line in res.json().get("lines", []):
        m = REPORT.match(line["message"])
        if m:
            found[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return found


def test_usage_and_metrics_match_the_report_lines(gw: Gateway) -> None:
    name = f"meter-{uuid.uuid4().hex[:8]}"
    res = gw.create(name, {"main.py": FN}, memory_mb=256, max_concurrency=1, timeout_s=10)
    assert res.status == 200, res.body

    responses: list[Response] = []
    for i in range(6):
        responses.append(gw.invoke(name, {"fail": i in (2, 4)}))
    assert [r.status for r in responses] == [200] * 6
    assert responses[0].headers.get("x-nimbus-cold-start") == "true"

    # A throttle: while a slow call holds the one slot, another call is refused with 429. Which of
    # the two takes the slot first is a race; the one refused is a throttle either way, and the
    # round is tried again until a slow call ran and another was refused meanwhile.
    throttled: list[Response] = []
    slow_ran = False
    deadline = time.monotonic() + 60
    while not (slow_ran and throttled) and time.monotonic() < deadline:
        slow: list[Response] = []
        holder = threading.Thread(
            target=lambda into: into.append(gw.invoke(name, {"sleep": 4})), args=(slow,)
        )
        holder.start()
        while holder.is_alive():
            r = gw.invoke(name, {})
            if r.status == 429:
                throttled.append(r)
                break
            responses.append(r)
        holder.join(30)
        for r in slow:
            (throttled if r.status == 429 else responses).append(r)
            slow_ran = slow_ran or r.status == 200
    assert slow_ran and throttled, (
        "no call was throttled while the slow call held max_concurrency 1"
    )
    assert all(r.status == 200 for r in responses), [r.status for r in responses]
    calls = len(responses)
    errors = sum(1 for r in responses if r.headers.get("x-nimbus-function-error"))
    assert errors == 2

    # Usage: every call, counted once, billed exactly as its REPORT line says.
    def metered() -> list[dict[str, Any]] | None:
        rows, _ = usage_rows(gw, name)
        return rows if sum(int(r["requests"]) for r in rows) >= calls else None

    rows = until_sync(metered, 120, f"usage to count {calls} requests")
    reports = until_sync(
        lambda: (lambda found: found if len(found) >= calls else None)(report_lines(gw, name)),
        60,
        "every REPORT line",
    )
    assert set(reports) == {r.headers["x-nimbus-request-id"] for r in responses}
    mb_ms = sum(billed * memory for billed, memory in reports.values())
    assert all(memory == 256 for _, memory in reports.values())
    assert sum(int(r["requests"]) for r in rows) == calls
    assert sum(int(r["billed_mb_ms"]) for r in rows) == mb_ms
    assert sum(r["gb_seconds"] for r in rows) == pytest.approx(mb_ms / 1024 / 1000, rel=1e-12)
    if len(rows) == 1:  # one day: the row's GB-s is exactly the REPORT lines' sum
        assert rows[0]["gb_seconds"] == mb_ms / 1024 / 1000
    assert {r["version"] for r in rows} == {"$LATEST"}

    # Metrics: the same calls per minute, with their errors and the throttle.
    def metrics_seen() -> list[dict[str, Any]] | None:
        res = gw.request("GET", f"/v1/functions/{name}/metrics?minutes=15")
        assert res.status == 200, res.body
        buckets = res.json()["buckets"]
        total = sum(int(b.get("throttles", 0)) for b in buckets)
        return buckets if total >= len(throttled) else None

    buckets = until_sync(metrics_seen, 30, "the throttle in the metrics")
    assert len(buckets) == 15
    starts = [datetime.fromisoformat(b["start"]) for b in buckets]
    assert starts == sorted(starts) and all(
        (b - a).total_seconds() == 60 for a, b in itertools.pairwise(starts)
    )
    assert sum(int(b.get("invocations", 0)) for b in buckets) == calls
    assert sum(int(b.get("errors", 0)) for b in buckets) == errors
    assert sum(int(b.get("throttles", 0)) for b in buckets) == len(throttled)
    assert sum(int(b.get("cold_starts", 0)) for b in buckets) >= 1
    busy = [b for b in buckets if int(b.get("invocations", 0))]
    assert all(
        0 < b["duration_p50_ms"] <= b["duration_p90_ms"] <= b["duration_p99_ms"] for b in busy
    )
    # The slow call (4 s) is in some minute's tail.
    assert max(b["duration_p99_ms"] for b in busy) >= 3000

    # The CLI prints the same through the SDK.
    env = {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": gw.api_key,
    }
    today = datetime.now(UTC).date()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "nimbus.cli",
            "usage",
            "--json",
            "--from",
            str(today - timedelta(days=1)),
            "--to",
            str(today + timedelta(days=1)),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (
        sum(int(r["requests"]) for r in json.loads(out.stdout)["rows"] if r["function"] == name)
        == calls
    )
    out = subprocess.run(
        [sys.executable, "-m", "nimbus.cli", "metrics", name, "--minutes", "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split()[:3] == ["MINUTE(UTC)", "CALLS", "ERRORS"]
    assert len(out.stdout.splitlines()) == 6


def test_usage_is_per_namespace_and_validated(gw: Gateway) -> None:
    ns = f"other{uuid.uuid4().hex[:6]}"
    res = gw.request("POST", "/v1/keys", {"namespace": ns, "admin": True})
    assert res.status == 200, res.body
    other_key = res.json()["api_key"]
    rows, data = usage_rows(gw, "", key=other_key)
    assert data.get("rows", []) == [] and int(data.get("total_requests", 0)) == 0

    for query, field in [
        ("from=2026-13-01", "from"),
        ("to=yesterday", "to"),
        ("from=2026-02-01&to=2026-01-31", "to"),
        ("from=2024-01-01&to=2025-01-01", "from"),
    ]:
        res = gw.request("GET", f"/v1/usage?{query}")
        assert res.status == 400, (query, res.body)
        assert res.json()["message"].startswith(f"{field}:"), res.body
    res = gw.request("GET", "/v1/usage")
    assert res.status == 200 and res.json()["from"].endswith("-01"), res.body

    name = f"meterv-{uuid.uuid4().hex[:6]}"
    assert gw.create(name, {"main.py": FN}).status == 200
    for minutes in ("0", "1441", "-5"):
        res = gw.request("GET", f"/v1/functions/{name}/metrics?minutes={minutes}")
        if minutes == "0":
            assert res.status == 200 and len(res.json()["buckets"]) == 60, res.body
        else:
            assert res.status == 400 and res.json()["message"].startswith("minutes:"), res.body
    res = gw.request("GET", f"/v1/functions/{name}/metrics?minutes=1440")
    assert res.status == 200 and len(res.json()["buckets"]) == 1440
    assert gw.request("GET", "/v1/functions/no-such-fn/metrics").status == 404
    # Another namespace's function is not there for this key.
    assert gw.request("GET", f"/v1/functions/{name}/metrics", key=other_key).status == 404
