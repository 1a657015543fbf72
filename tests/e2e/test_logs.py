"""Function logs end to end: a function prints, the node-agent ships to NIMBUS_LOGS, the api answers
GET /v1/functions/{name}/logs, and `nimbus logs [-f]` prints them."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from tests.support import until_sync

pytestmark = pytest.mark.timeout(300)

NIMBUS = [sys.executable, "-m", "nimbus.cli"]

LOUD = """
import sys

def handler(event, context):
    print("to stdout", event.get("tag", ""))
    print("to stderr", event.get("tag", ""), file=sys.stderr)
    if event.get("big"):
        print("z" * event["big"])
    return {"ok": True}
"""


def call_lines(gw, name: str, request_id: str) -> list[dict[str, Any]]:
    """The call's lines, once its REPORT line is in the log."""

    def complete() -> list[dict[str, Any]] | None:
        res = gw.request("GET", f"/v1/functions/{name}/logs?request_id={request_id}")
        assert res.status == 200, res.body
        lines = res.json()["lines"]
        return lines if any(line["message"].startswith("REPORT") for line in lines) else None

    return until_sync(complete, 60, f"the logs of {request_id}")


def cli_env(gw, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": gw.api_key,
        **extra,
    }
    env.pop("NO_COLOR", None)
    return env


@pytest.fixture(scope="module")
def loud(gw) -> str:
    name = f"logs-{uuid.uuid4().hex[:8]}"
    # One instance at most from the autoscaler: one it pre-started would report its own Init
    # Duration on its first call, which the platform rightly calls warm.
    res = gw.create(name, {"main.py": LOUD}, max_concurrency=1)
    assert res.status == 200, res.body
    return name


def test_a_call_has_its_streams_and_report(gw, loud: str) -> None:
    res = gw.invoke(loud, {"tag": "first"})
    assert res.status == 200, res.body
    rid = res.headers["x-nimbus-request-id"]
    lines = call_lines(gw, loud, rid)
    by_message = {line["message"]: line for line in lines}
    assert by_message["to stdout first"]["stream"] == "stdout"
    assert by_message["to stderr first"]["stream"] == "stderr"
    platform = [line["message"] for line in lines if line["stream"] == "platform"]
    assert platform[0] == f"START RequestId: {rid} Version: $LATEST"
    assert platform[-2] == f"END RequestId: {rid}"
    report = platform[-1]
    assert report.startswith(f"REPORT RequestId: {rid}\tDuration: ")
    for part in (
        "\tBilled Duration: ",
        "\tMemory Size: 128 MB",
        "\tMax Memory Used: ",
        "\tInit Duration: ",
    ):
        assert part in report, report
    assert int(report.split("Max Memory Used: ")[1].split(" MB")[0]) > 0
    assert all(line["request_id"] == rid and line["version"] == "$LATEST" for line in lines)
    timestamps = [line["timestamp"] for line in lines]
    assert timestamps == sorted(timestamps) and all(ts.endswith("Z") for ts in timestamps)

    # A warm call has no Init Duration; a query without request_id sees both calls. (An invoker
    # whose etcd watch has not shown it the first instance yet may start another: that call is
    # cold too, so the check takes the first call the platform says was warm.)
    for _ in range(5):
        second = gw.invoke(loud, {"tag": "second"})
        if second.headers["x-nimbus-cold-start"] == "false":
            break
    assert second.headers["x-nimbus-cold-start"] == "false"
    rid2 = second.headers["x-nimbus-request-id"]
    report2 = [
        line["message"]
        for line in call_lines(gw, loud, rid2)
        if line["message"].startswith("REPORT")
    ][0]
    assert "Init Duration" not in report2
    everything = gw.request("GET", f"/v1/functions/{loud}/logs").json()
    assert {rid, rid2} <= {line["request_id"] for line in everything["lines"]} and everything[
        "truncated"
    ] is False
    limited = gw.request("GET", f"/v1/functions/{loud}/logs?limit=2").json()
    assert len(limited["lines"]) == 2 and limited["truncated"] is True


def test_a_300_kb_print_is_cut_with_a_note(gw, loud: str) -> None:
    res = gw.invoke(loud, {"tag": "big", "big": 300 * 1024})
    assert res.status == 200, res.body
    lines = call_lines(gw, loud, res.headers["x-nimbus-request-id"])
    notes = [
        line["message"] for line in lines if line["message"].startswith("[nimbus] output truncated")
    ]
    assert len(notes) == 1 and "over the 256 KB limit were dropped" in notes[0]
    assert [line["stream"] for line in lines if line["message"] == notes[0]] == ["platform"]


def test_bad_queries(gw, loud: str) -> None:
    res = gw.request("GET", f"/v1/functions/{loud}/logs?limit=10001")
    assert (
        res.status == 400 and "limit" in res.json()["message"] and "10000" in res.json()["message"]
    )
    res = gw.request("GET", f"/v1/functions/{loud}/logs?since=yesterday")
    assert res.status == 400 and "since" in res.json()["message"]
    assert gw.request("GET", "/v1/functions/no-such-fn/logs").status == 404


def test_cli_prints_plain_lines_when_piped(gw, loud: str) -> None:
    rid = gw.invoke(loud, {"tag": "piped"}).headers["x-nimbus-request-id"]
    call_lines(gw, loud, rid)
    out = subprocess.run(
        [*NIMBUS, "logs", loud, "--request-id", rid],
        capture_output=True,
        text=True,
        env=cli_env(gw),
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b[" not in out.stdout
    rows = out.stdout.splitlines()
    assert any(row.endswith("stderr    to stderr piped") and rid[:8] in row for row in rows), rows
    assert any("platform  REPORT RequestId: " + rid in row for row in rows), rows


def test_cli_follows_new_lines_until_interrupted(gw, loud: str) -> None:
    proc = subprocess.Popen(
        [*NIMBUS, "logs", loud, "-f"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(gw),
    )
    out: queue.Queue[str] = queue.Queue()
    err: list[str] = []
    threading.Thread(target=lambda: [out.put(line) for line in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    try:
        until_sync(
            lambda: any("following the log" in line for line in err), 30, "the tail to start"
        )
        tag = uuid.uuid4().hex[:8]
        assert gw.invoke(loud, {"tag": tag}).status == 200
        seen: list[str] = []

        def marker_seen() -> bool:
            while not out.empty():
                seen.append(out.get())
            return any(f"to stdout {tag}" in line for line in seen)

        until_sync(marker_seen, 60, "the new call's line in `nimbus logs -f`")
        assert all("\x1b[" not in line for line in seen)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 130
    assert not any("Traceback" in line for line in err), err


def test_rest_tail_streams_a_json_array(gw, loud: str) -> None:
    import http.client

    res = gw.invoke(loud, {"tag": "rest-tail"})
    rid = res.headers["x-nimbus-request-id"]
    since = call_lines(gw, loud, rid)[0]["timestamp"]
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request(
            "GET",
            f"/v1/functions/{loud}/logs:tail?request_id={rid}&since={since}",
            headers={"Authorization": f"Bearer {gw.api_key}"},
        )
        resp = conn.getresponse()
        assert resp.status == 200
        body = b""
        deadline = time.monotonic() + 30
        while b"REPORT RequestId" not in body and time.monotonic() < deadline:
            body += resp.read1(65536)
        assert (
            body.lstrip().startswith(b"[")
            and b'"stream":"stdout"' in body
            and b"to stdout rest-tail" in body
        )
    finally:
        conn.close()
