"""Issue 15 from outside, against the real cluster: what a function or a tenant key can do to the
planes tenants share (billing, logs, request parsing) and cannot."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from support import zip_of

from tests.support import until_sync

pytestmark = pytest.mark.timeout(300)

NIMBUS = [sys.executable, "-m", "nimbus.cli"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# A handler that lies about its clock (frozen perf_counter_ns: the shim's stopwatch) and about
# its log: it prints the platform's END/REPORT lines and terminal escapes of its own.
LIAR = """
import sys, time
_sleep = time.sleep
time.perf_counter_ns = lambda: 7

def handler(event, context):
    rid = context.request_id
    print(f"END RequestId: {rid}")
    print(f"REPORT RequestId: {rid}\\tDuration: 1.00 ms\\tBilled Duration: 1 ms", file=sys.stderr)
    print("\\x1b[2mfaint\\x1b[0m\\rover")
    _sleep(event.get("s", 0))
    return "done"
"""


@pytest.fixture(scope="module")
def liar(gw) -> str:
    name = unique("liar")
    res = gw.create(name, {"main.py": LIAR})
    assert res.status == 200, res.body
    return name


def test_billing_ignores_a_handler_that_fakes_its_clock(gw, liar: str) -> None:
    res = gw.invoke(liar, {"s": 1.2})
    assert res.status == 200 and res.json() == "done", res.body
    assert int(res.headers["x-nimbus-billed-ms"]) >= 1200


def test_a_function_cannot_forge_platform_lines(gw, liar: str) -> None:
    res = gw.request("POST", f"/v1/functions/{liar}:invoke?log=tail", raw=b"{}")
    assert res.status == 200, res.body
    rid = res.headers["x-nimbus-request-id"]
    tail = base64.b64decode(res.headers["x-nimbus-log-tail"]).decode().splitlines()
    assert f"(stdout) END RequestId: {rid}" in tail
    assert any(line.startswith(f"(stderr) REPORT RequestId: {rid}") for line in tail)
    assert "\\x1b[2mfaint\\x1b[0m\\x0dover" in tail
    assert [line for line in tail if line.startswith("END")] == [f"END RequestId: {rid}"]
    assert len([line for line in tail if line.startswith("REPORT")]) == 1

    # The API tags each line with its stream: the forged ones are stdout/stderr.
    def complete() -> list[dict[str, Any]] | None:
        got = gw.request("GET", f"/v1/functions/{liar}/logs?request_id={rid}")
        assert got.status == 200, got.body
        lines: list[dict[str, Any]] = got.json()["lines"]
        done = any(
            ln["stream"] == "platform" and ln["message"].startswith("REPORT") for ln in lines
        )
        return lines if done else None

    lines = until_sync(complete, 60, f"the logs of {rid}")
    ends = sorted(ln["stream"] for ln in lines if ln["message"].startswith("END RequestId"))
    assert ends == ["platform", "stdout"]

    # `nimbus logs` on a terminal-like run: no raw ESC or CR from the function reaches it.
    env = {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": gw.api_key,
    }
    out = subprocess.run(
        [*NIMBUS, "logs", liar, "--request-id", rid],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\r" not in out.stdout
    assert "\\x1b[2mfaint\\x1b[0m\\x0dover" in out.stdout


DEEP = b"[" * 100_000
DEEP_OBJECT = b'{"a":' * 20_000 + b"1" + b"}" * 20_000


@pytest.mark.parametrize("body", [DEEP, DEEP_OBJECT], ids=["array", "object"])
def test_json_nested_too_deep_is_a_400_on_every_route(gw, liar: str, body: bytes) -> None:
    routes = [
        ("POST", "/v1/functions"),
        ("PATCH", f"/v1/functions/{liar}"),
        ("PUT", f"/v1/functions/{liar}/code"),
        ("POST", f"/v1/functions/{liar}/versions"),
        ("PUT", f"/v1/functions/{liar}/aliases/live"),
        ("POST", f"/v1/functions/{liar}/triggers"),
        ("POST", "/v1/keys"),
        ("POST", f"/v1/functions/{liar}:invoke"),
        ("POST", f"/v1/functions/{liar}:invokeAsync"),
        ("POST", f"/v2/functions/{liar}:invoke"),
    ]
    for method, path in routes:
        res = gw.request(method, path, raw=body)
        assert res.status == 400, (method, path, res.status, res.body[:300])
        error = res.json()
        assert error["code"] and error["message"], (method, path, error)


def test_min_instances_is_bounded_on_create_as_on_patch(gw) -> None:
    name = unique("greedy")
    files = {"main.py": "def handler(event, context):\n    return 1\n"}
    for field, value in (("min_instances", 2_147_483_647), ("min_instances", 1001)):
        res = gw.create(name, files, **{field: value})
        assert res.status == 400, res.body
        assert res.json()["message"].startswith(f"{field}: {value} is out of range"), res.body
    assert gw.request("GET", f"/v1/functions/{name}").status == 404
    assert gw.create(name, files).status == 200
    res = gw.request("PATCH", f"/v1/functions/{name}", {"min_instances": 2_147_483_647})
    assert res.status == 400 and res.json()["message"].startswith("min_instances: "), res.body


def test_admin_status_shows_every_node_sandboxed(gw) -> None:
    env = {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": gw.api_key,
    }
    out = subprocess.run(
        [*NIMBUS, "admin", "status"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    nodes = gw.request("GET", "/v2/admin/nodes").json()["nodes"]
    assert len(nodes) == 2 and all(n["sandbox"] == "runc" and n["isolated"] for n in nodes)
    assert "WITHOUT a sandbox" not in out.stderr
    assert all(n["node_id"] in out.stdout for n in nodes) and "runc" in out.stdout
    # A tenant key sees no node.
    key = gw.request("POST", "/v1/keys", {"namespace": unique("t")}).json()["api_key"]
    assert gw.request("GET", "/v2/admin/nodes", key=key).status == 403


SLEEPER = (
    "import time\n\ndef handler(event, context):\n"
    "    time.sleep(event.get('s', 0))\n    return 'ok'\n"
)


def tenant(gw) -> tuple[str, str]:
    namespace = unique("q")
    res = gw.request("POST", "/v1/keys", {"namespace": namespace})
    assert res.status == 200, res.body
    return namespace, res.json()["api_key"]


def test_quotas_are_set_by_admins_and_read_by_their_namespace(gw) -> None:
    namespace, key = tenant(gw)
    other, other_key = tenant(gw)
    path = f"/v1/namespaces/{namespace}/quotas"
    assert gw.request("GET", path, key=key).json()["max_functions"] == "0"  # int64 as a string
    assert gw.request("PUT", path, {"max_functions": 5}, key=key).status == 403
    assert gw.request("GET", path, key=other_key).status == 403
    res = gw.request("PUT", path, {"max_functions": -1})
    assert res.status == 400 and res.json()["message"].startswith("max_functions: -1"), res.body
    res = gw.request("PUT", "/v1/namespaces/Bad_Name/quotas", {"max_functions": 1})
    assert res.status == 400 and res.json()["message"].startswith("namespace: "), res.body
    res = gw.request("PUT", path, {"max_functions": 5, "max_warm_mb": 256})
    assert res.status == 200 and res.json()["updated_at"], res.body
    got = gw.request("GET", path, key=key).json()
    assert (got["max_functions"], got["max_warm_mb"]) == ("5", "256")
    assert gw.request("GET", f"/v1/namespaces/{other}/quotas", key=other_key).status == 200


def test_deploys_over_a_quota_are_refused_naming_it(gw) -> None:
    namespace, key = tenant(gw)
    path = f"/v1/namespaces/{namespace}/quotas"
    assert gw.request("PUT", path, {"max_functions": 2, "max_warm_mb": 256}).status == 200
    files = {"main.py": SLEEPER}

    def create(name: str, **extra: Any):
        body = {
            "name": name,
            "runtime": "python3.11",
            "handler": "main.handler",
            "code": {"zip_base64": base64.b64encode(zip_of(files)).decode()},
            **extra,
        }
        return gw.request("POST", "/v1/functions", body, key=key)

    assert create("one", min_instances=1, memory_mb=128).status == 200
    res = create("two", min_instances=2, memory_mb=128)
    assert res.status == 429 and res.json()["message"].startswith("quota max_warm_mb: "), res.body
    assert create("two").status == 200
    res = create("three")
    assert res.status == 429 and res.json()["message"].startswith("quota max_functions: "), res.body
    res = gw.request("PATCH", "/v1/functions/two", {"min_instances": 1, "memory_mb": 256}, key=key)
    assert res.status == 429 and "max_warm_mb" in res.json()["message"], res.body
    # Another namespace is not held to this one's quotas.
    _, free_key = tenant(gw)
    body = {
        "name": "three",
        "runtime": "python3.11",
        "handler": "main.handler",
        "code": {"zip_base64": base64.b64encode(zip_of(files)).decode()},
    }
    assert gw.request("POST", "/v1/functions", body, key=free_key).status == 200


def test_calls_and_events_over_a_quota_are_throttled(gw) -> None:
    import concurrent.futures

    namespace, key = tenant(gw)
    path = f"/v1/namespaces/{namespace}/quotas"
    assert gw.request("PUT", path, {"max_concurrency": 1, "max_async_backlog": 2}).status == 200
    body = {
        "name": "slow",
        "runtime": "python3.11",
        "handler": "main.handler",
        "code": {"zip_base64": base64.b64encode(zip_of({"main.py": SLEEPER})).decode()},
    }
    assert gw.request("POST", "/v1/functions", body, key=key).status == 200
    assert gw.request("POST", "/v1/functions/slow:invoke", {"s": 0}, key=key).status == 200

    def wait_quota_seen() -> bool:
        # The invokers watch the quotas: the first call held by the quota shows they have it.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            calls = [
                pool.submit(gw.request, "POST", "/v1/functions/slow:invoke", {"s": 1.5}, key=key)
                for _ in range(2)
            ]
            statuses = sorted(c.result().status for c in calls)
        return statuses == [200, 429]

    until_sync(wait_quota_seen, 60, "one of two concurrent calls to be throttled")
    statuses = []
    for _ in range(6):
        res = gw.request("POST", "/v1/functions/slow:invokeAsync", {"s": 3}, key=key)
        statuses.append(res.status)
        if res.status == 429:
            assert res.json()["message"].startswith("quota max_async_backlog: "), res.body
    assert statuses.count(202) + statuses.count(200) >= 2 and 429 in statuses, statuses
