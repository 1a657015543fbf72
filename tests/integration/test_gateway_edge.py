"""Envoy's edge protections as the local cluster renders them, on a real Envoy with no upstream:
per-key rate limits (429 + Retry-After, RESOURCE_EXHAUSTED over gRPC), route timeouts, the admin
interface on loopback only, and xDS files that Envoy picks up with no restart."""

from __future__ import annotations

import http.client
import json
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import pytest
from nimbus.api.v1 import functions_pb2, functions_pb2_grpc
from nimbus.cluster import binaries, envoy, free_port, spec
from nimbus.common.registry import Rollout, ServiceEndpoint
from nimbus.gateway import xds
from nimbus.gateway.stores.files import XdsDirectory

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def edge(tmp_path: Path):
    if not envoy.DESCRIPTOR.exists():
        pytest.skip("run make proto")
    cluster_spec = spec.load()
    ports = {name: free_port() for name in cluster_spec.port_names}
    gateway = free_port()
    xds_dir = tmp_path / "xds"
    XdsDirectory(xds_dir).write(xds.seed_files())
    config = tmp_path / "envoy.yaml"
    config.write_text(
        envoy.render(
            cluster_spec,
            ports,
            gateway,
            xds_dir=xds_dir,
            limits=envoy.EdgeLimits(key_rps=2, key_burst=3, anon_rps=1, anon_burst=50),
        )
    )
    binary = binaries.resolve({"envoy"})["envoy"]
    proc = subprocess.Popen(
        [binary, "-c", str(config), "--disable-hot-restart", "--log-level", "warn"],
        stdout=open(tmp_path / "envoy.log", "wb"),
        stderr=subprocess.STDOUT,
    )
    admin = ports["envoy_admin"]
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as res:
                if res.status == 200:
                    break
        except OSError:
            pass
        assert proc.poll() is None, (tmp_path / "envoy.log").read_text()
        assert time.monotonic() < deadline, "envoy not ready"
        time.sleep(0.1)
    try:
        yield gateway, admin, xds_dir, config.read_text()
    finally:
        proc.terminate()
        proc.wait(10)


def _get(port: int, path: str, key: str | None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        conn.request("GET", path, headers=headers)
        res = conn.getresponse()
        return res.status, {k.lower(): v for k, v in res.getheaders()}, res.read()
    finally:
        conn.close()


def test_per_key_rate_limit_answers_429_with_retry_after(edge):
    gateway, _, _, _ = edge
    statuses = [_get(gateway, "/v1/functions", "key-a")[0] for _ in range(6)]
    # the burst (3) passes on to the (absent) upstream: 503; then the bucket is empty
    assert statuses[:3] == [503] * 3 and statuses[3:] == [429] * 3
    status, headers, body = _get(gateway, "/v1/functions", "key-a")
    assert status == 429 and headers["retry-after"] == "1"
    assert json.loads(body)["code"] == 8  # RESOURCE_EXHAUSTED, in the API's error shape
    # another key has a bucket of its own
    assert _get(gateway, "/v1/functions", "key-b")[0] == 503
    # gRPC callers get RESOURCE_EXHAUSTED
    with grpc.insecure_channel(f"127.0.0.1:{gateway}") as channel:
        stub = functions_pb2_grpc.FunctionsStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.ListFunctions(
                functions_pb2.ListFunctionsRequest(),
                metadata=(("authorization", "Bearer key-a"),),
                timeout=5,
            )
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # the bucket refills
    time.sleep(1.1)
    assert _get(gateway, "/v1/functions", "key-a")[0] == 503


def test_route_timeouts_and_loopback_admin(edge):
    _, admin, _, text = edge
    assert (
        f"timeout: {envoy.INVOKE_TIMEOUT}" in text and f"timeout: {envoy.CONTROL_TIMEOUT}" in text
    )
    assert f"address: 127.0.0.1, port_value: {admin}" in text
    with urllib.request.urlopen(
        f"http://127.0.0.1:{admin}/config_dump?resource=dynamic_route_configs", timeout=2
    ):
        pass
    routes = json.load(
        urllib.request.urlopen(f"http://127.0.0.1:{admin}/config_dump?include_eds", timeout=2)
    )
    dumped = json.dumps(routes)
    assert '"timeout": "960s"' in dumped and '"timeout": "300s"' in dumped


def test_xds_files_move_endpoints_and_weights_without_restart(edge):
    _, admin, xds_dir, _ = edge
    records = [
        ServiceEndpoint("api", "api-1", "127.0.0.1:1", ("v1", "v2")),
        ServiceEndpoint("api", "old-1", "127.0.0.1:2", ("v1",)),
    ]
    started = time.monotonic()
    XdsDirectory(xds_dir).write(xds.files(xds.build(records, {"api": Rollout("api", "v2", 0.25)})))

    def seen() -> tuple[set[str], str]:
        clusters = json.load(
            urllib.request.urlopen(f"http://127.0.0.1:{admin}/clusters?format=json", timeout=2)
        )
        hosts = {
            f"{c['name']}/{h.get('hostname', '')}"
            for c in clusters["cluster_statuses"]
            if c["name"].startswith("api_")
            for h in c.get("host_statuses", [])
        }
        runtime = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/runtime", timeout=2))[
            "entries"
        ]
        return hosts, runtime.get("nimbus.routes.api.v1.api_v2", {}).get("final_value", "")

    while seen() != ({"api_v2/api-1", "api_v1/old-1"}, "250"):
        assert time.monotonic() - started < 2.0, seen()
        time.sleep(0.01)
    XdsDirectory(xds_dir).write(xds.files(xds.build(records[:1], {})))
    while seen() != ({"api_v2/api-1"}, "1000"):
        assert time.monotonic() - started < 4.0, seen()
        time.sleep(0.01)


def test_the_credential_is_normalised_and_random_keys_share_the_address_bucket(edge):
    gateway, _, _, _ = edge

    def get(authorization: str | None, forwarded_for: str | None = None) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", gateway, timeout=5)
        headers = {"Authorization": authorization} if authorization is not None else {}
        if forwarded_for:
            headers["X-Forwarded-For"] = forwarded_for
        try:
            conn.request("GET", "/v1/functions", headers=headers)
            return conn.getresponse().status
        finally:
            conn.close()

    # One key's burst is 3, whatever the scheme's case or the blanks around it.
    spellings = [
        "Bearer key-c",
        "bearer key-c",
        "BEARER   key-c",
        "  Bearer key-c  ",
        "bEaReR\tkey-c",
    ]
    assert [get(a) for a in spellings] == [503, 503, 503, 429, 429]
    # A client's own x-nimbus-credential is not what counts.
    conn = http.client.HTTPConnection("127.0.0.1", gateway, timeout=5)
    conn.request(
        "GET",
        "/v1/functions",
        headers={"Authorization": "Bearer key-c", "x-nimbus-credential": "x"},
    )
    assert conn.getresponse().status == 429
    conn.close()
    # Random keys each have a bucket of their own, but all of them share the address's (50):
    # past it, even a fresh key and a spoofed X-Forwarded-For are turned away.
    statuses = [get(f"Bearer random-{i}") for i in range(60)]
    assert statuses.count(503) <= 50 and statuses[-5:] == [429] * 5
    assert get("Bearer never-seen") == 429
    assert get("Bearer another", forwarded_for="203.0.113.7") == 429
    assert get(None) == 429


def test_the_admin_port_cannot_change_routes_or_limits(edge):
    gateway, admin, _, text = edge
    for key, value in (
        ("nimbus.routes.api.v1.api_v1", "1000"),
        ("nimbus.ratelimit.enabled", "0"),
        ("nimbus.ratelimit.enforced", "0"),
    ):
        req = urllib.request.Request(
            f"http://127.0.0.1:{admin}/runtime_modify?{key}={value}", method="POST"
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=2)
        assert err.value.code in (400, 503), err.value.code
    runtime = json.load(urllib.request.urlopen(f"http://127.0.0.1:{admin}/runtime", timeout=2))
    assert not any(e.startswith("nimbus.ratelimit") for e in runtime.get("entries", {}))
    assert "runtime_key: nimbus.ratelimit" not in text
    # The limit holds: the burst of 3, then 429.
    statuses = [_get(gateway, "/v1/functions", "key-admin")[0] for _ in range(5)]
    assert statuses == [503, 503, 503, 429, 429]
