"""Service discovery through the gateway, and API v2 served beside v1 (tags, paging, batch invoke).

Every replica registers itself in etcd under a lease; the gateway program turns the registry into
Envoy's endpoints (file-based EDS) with no restart. Numbers printed: join and leave times."""

from __future__ import annotations

import base64
import json
import signal
import time
import uuid

import grpc
import pytest
from nimbus.api.v1 import functions_pb2 as v1_pb
from nimbus.api.v1 import functions_pb2_grpc as v1_grpc
from nimbus.api.v2 import functions_pb2 as v2_pb
from nimbus.api.v2 import functions_pb2_grpc as v2_grpc
from nimbus.common.registry import API_RELEASES
from replicas import envoy_hosts, spawn_api, until
from support import zip_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

ECHO = {"main.py": "def handler(event, context):\n    return event\n"}
FAIL = {"main.py": "def handler(event, context):\n    raise ValueError('no')\n"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_v2(gw, name: str, files: dict[str, str], **extra):
    body = {
        "name": name,
        "runtime": "python3.11",
        "handler": "main.handler",
        "code": {"zip_base64": base64.b64encode(zip_of(files)).decode()},
        **extra,
    }
    return gw.request("POST", "/v2/functions", body)


async def test_every_service_replica_is_registered(cluster, gw):
    res = gw.request("GET", "/v2/admin/endpoints")
    assert res.status == 200, res.body
    endpoints = res.json()["endpoints"]
    replicas = {e["replica"]: e for e in endpoints}
    for name in (
        "api-1",
        "api-2",
        "invoker-1",
        "invoker-2",
        "funcmgr",
        "scheduler-1",
        "scheduler-2",
        "node-agent-1",
        "gateway-sync",
    ):
        assert name in replicas, sorted(replicas)
        assert replicas[name]["address"] == f"127.0.0.1:{cluster.ports[name]}"
        assert replicas[name]["state"] == "SERVING"
    assert (
        replicas["api-1"]["api_versions"] == list(API_RELEASES)
        and replicas["api-1"]["release"] == "v2"
    )
    assert replicas["funcmgr"]["api_versions"] == []
    # Envoy routes to exactly the registered api and invoker replicas
    hosts = envoy_hosts(cluster)
    assert set(hosts["api_v2"]) == {f"127.0.0.1:{cluster.ports[n]}" for n in ("api-1", "api-2")}
    assert set(hosts["invoker_v2"]) == {
        f"127.0.0.1:{cluster.ports[n]}" for n in ("invoker-1", "invoker-2")
    }
    # only admins see the registry
    key = gw.request("POST", "/v1/keys", {"namespace": unique("ns")}).json()["api_key"]
    assert gw.request("GET", "/v2/admin/endpoints", key=key).status == 403


async def test_a_replica_joins_within_2s_and_leaves_within_its_lease(cluster, gw):
    replica = spawn_api(cluster, unique("api-extra"), "v1,v2", NIMBUS_REGISTRY_TTL_S="3")
    try:
        # Serving: its own health check says so (as Envoy's will)
        from nimbus.cluster.health import grpc_health

        await until(
            lambda: __import__("asyncio").run(
                grpc_health(replica.port, "api", cluster.operator_identity)
            ),
            30,
            "extra replica serving",
            interval_s=0.01,
        )
        served_at = time.monotonic()
        _, joined_s = await until(
            lambda: envoy_hosts(cluster)["api_v2"].get(replica.address),
            10,
            "Envoy routes to the new replica",
        )
        joined_s = time.monotonic() - served_at
        print(
            f"\n[discovery] a new api replica was routed by Envoy {joined_s * 1000:.0f} ms"
            " after it was serving"
        )
        assert joined_s < 2.0
        # calls reach it: Envoy's per-host counter rises while the cluster answers
        for _ in range(20):
            assert gw.request("GET", "/v1/functions").status == 200

        replica.proc.send_signal(signal.SIGKILL)
        replica.proc.wait(10)
        killed_at = time.monotonic()
        await until(
            lambda: replica.address not in envoy_hosts(cluster)["api_v2"],
            10,
            "dead replica leaves Envoy",
        )
        left_s = time.monotonic() - killed_at
        print(
            f"[discovery] a kill -9'd api replica left Envoy's endpoints after {left_s:.1f} s"
            " (lease TTL 3 s)"
        )
        assert left_s <= 3.0 + 1.0
        for _ in range(20):
            assert gw.request("GET", "/v1/functions").status == 200
    finally:
        replica.stop(signal.SIGKILL)


async def test_sigterm_leaves_envoy_before_the_replica_stops(cluster, gw):
    replica = spawn_api(cluster, unique("api-term"), "v1,v2")
    try:
        await until(lambda: envoy_hosts(cluster)["api_v2"].get(replica.address), 30, "routed")
        replica.proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        await until(
            lambda: replica.address not in envoy_hosts(cluster)["api_v2"], 5, "gone from Envoy"
        )
        gone_s = time.monotonic() - sent
        assert replica.proc.poll() is None, "it left Envoy before it stopped serving"
        assert replica.proc.wait(20) == 0
        print(
            f"\n[discovery] SIGTERM: out of Envoy's endpoints after {gone_s * 1000:.0f} ms,"
            " still serving then"
        )
    finally:
        replica.stop(signal.SIGKILL)


async def test_v2_tags_and_paging_beside_v1(gw):
    prefix = unique("pg")
    names = [f"{prefix}-{i}" for i in range(5)]
    for i, name in enumerate(names):
        tags = {"team": "a" if i % 2 == 0 else "b", "batch": prefix}
        res = create_v2(gw, name, ECHO, tags=tags)
        assert res.status == 200, res.body
        assert res.json()["tags"] == tags
    # v1 sees the same functions, without tags, unchanged
    v1 = gw.request("GET", f"/v1/functions/{names[0]}").json()
    assert v1["name"] == names[0] and "tags" not in v1
    # paging: two at a time, in name order, every one once
    seen, token, pages = [], "", 0
    while True:
        path = f"/v2/functions?page_size=2&tag=batch%3D{prefix}"
        if token:
            path += f"&page_token={token}"
        res = gw.request("GET", path)
        assert res.status == 200, res.body
        body = res.json()
        seen += [f["name"] for f in body["functions"]]
        pages += 1
        token = body["next_page_token"]
        if not token:
            break
    assert seen == names and pages == 3
    team_a = gw.request("GET", f"/v2/functions?tag=batch%3D{prefix}&tag=team%3Da").json()
    assert [f["name"] for f in team_a["functions"]] == names[0::2]
    # a bad token is a 400 naming the field
    bad = gw.request("GET", "/v2/functions?page_token=garbage")
    assert bad.status == 400 and "page_token" in bad.json()["message"]
    # PATCH replaces the tags; v1's PATCH leaves them alone
    res = gw.request("PATCH", f"/v2/functions/{names[1]}", {"tags": {"tags": {"team": "c"}}})
    assert res.status == 200 and res.json()["tags"] == {"team": "c"}, res.body
    assert (
        gw.request("PATCH", f"/v1/functions/{names[1]}", {"description": "v1 edit"}).status == 200
    )
    assert gw.request("GET", f"/v2/functions/{names[1]}").json()["tags"] == {"team": "c"}
    bad_tag = gw.request(
        "PATCH", f"/v2/functions/{names[1]}", {"tags": {"tags": {"nimbus:x": "1"}}}
    )
    assert bad_tag.status == 400 and "tags" in bad_tag.json()["message"]
    # versions page too
    for i in range(3):
        # a version is published only when $LATEST changed since the last one
        assert (
            gw.request("PATCH", f"/v1/functions/{names[0]}", {"description": f"cut {i}"}).status
            == 200
        )
        assert gw.request("POST", f"/v1/functions/{names[0]}/versions", {}).status == 200
    first = gw.request("GET", f"/v2/functions/{names[0]}/versions?page_size=2").json()
    assert [v["version"] for v in first["versions"]] == ["1", "2"] and first["next_page_token"]
    rest = gw.request(
        "GET",
        f"/v2/functions/{names[0]}/versions?page_size=2&page_token={first['next_page_token']}",
    ).json()
    assert [v["version"] for v in rest["versions"]] == ["3"] and rest["next_page_token"] == ""


async def test_batch_invoke(gw):
    echo, fail = unique("b-echo"), unique("b-fail")
    assert gw.create(echo, ECHO).status == 200
    assert gw.create(fail, FAIL).status == 200
    items = [{"name": echo, "event": {"i": i}} for i in range(5)]
    items += [{"name": fail}, {"name": unique("missing")}, {"name": echo}]
    res = gw.request("POST", "/v2/functions:batchInvoke", {"items": items})
    assert res.status == 200, res.body
    results = res.json()["results"]
    assert [r["result"] for r in results[:5]] == [{"i": i} for i in range(5)]
    assert all(r["request_id"] and r["executed_version"] == "$LATEST" for r in results[:5])
    assert (
        results[5]["function_error"] == "Unhandled"
        and results[5]["result"]["errorType"] == "ValueError"
    )
    assert results[6]["error"]["code"] == "NOT_FOUND" and results[6]["error"]["http_status"] == 404
    assert results[7]["result"] == {}
    too_many = gw.request("POST", "/v2/functions:batchInvoke", {"items": [{"name": echo}] * 101})
    assert too_many.status == 400 and "items" in too_many.json()["message"]
    # v2 single invoke is v1's
    one = gw.request("POST", f"/v2/functions/{echo}:invoke", raw=json.dumps({"x": 1}).encode())
    assert one.status == 200 and one.json() == {"x": 1} and one.headers["x-nimbus-request-id"]


async def test_grpc_routes_by_package(gw):
    name = unique("grpc2")
    meta = (("authorization", f"Bearer {gw.api_key}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        created = await v2_grpc.FunctionsStub(channel).CreateFunction(
            v2_pb.CreateFunctionRequest(
                name=name,
                runtime="python3.11",
                handler="main.handler",
                code=v2_pb.Code(zip_base64=zip_of(ECHO)),
                tags={"via": "grpc"},
            ),
            metadata=meta,
            timeout=30,
        )
        assert created.tags == {"via": "grpc"}
        got = await v1_grpc.FunctionsStub(channel).GetFunction(
            v1_pb.GetFunctionRequest(name=name), metadata=meta, timeout=10
        )
        assert got.name == name
        page = await v2_grpc.FunctionsStub(channel).ListFunctions(
            v2_pb.ListFunctionsRequest(page_size=1000, tag=["via=grpc"]), metadata=meta, timeout=10
        )
        assert name in [f.name for f in page.functions]


async def test_gateway_sync_survives_kill_9(cluster, gw):
    """Envoy keeps its last endpoints while gateway-sync is down; the restarted one picks up what
    changed meanwhile."""
    old_pid = cluster.kill("gateway-sync", signal.SIGKILL)
    replica = spawn_api(cluster, unique("api-while-down"), "v1,v2")
    try:
        for _ in range(20):
            assert gw.request("GET", "/v1/functions").status == 200
        await until(
            lambda: cluster.pid("gateway-sync") not in (0, old_pid), 30, "gateway-sync restarted"
        )
        await cluster.wait_healthy("gateway-sync", timeout_s=30)
        await until(
            lambda: envoy_hosts(cluster)["api_v2"].get(replica.address),
            10,
            "joined after the restart",
        )
    finally:
        replica.stop(signal.SIGKILL)
    await until(lambda: replica.address not in envoy_hosts(cluster)["api_v2"], 10, "left again")
