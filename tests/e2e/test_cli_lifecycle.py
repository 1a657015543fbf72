"""Issue 3 through the `nimbus` CLI against the real cluster: large packages streamed over gRPC,
versions, weighted aliases and API keys, run as a user runs them (a subprocess with
NIMBUS_ENDPOINT / NIMBUS_API_KEY, stdout and stderr piped)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from nimbus.client import NimbusApiError, zip_directory
from nimbus.client.config import ClientConfig
from nimbus.client.upload import upload_code
from support import Gateway

from tests.support import until_passes

NIMBUS = [sys.executable, "-m", "nimbus.cli"]
MiB = 1024 * 1024

HANDLER = """\
import hashlib, os

def handler(event, context):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "blob.bin"), "rb") as f:
        data = f.read()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "v": VERSION}

VERSION = %d
"""


def run(
    gw: Gateway, *args: str, key: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": key or gw.api_key,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [*NIMBUS, *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    )
    return proc


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_package(d: Path, version: int, blob_size: int) -> bytes:
    """main.py plus `blob_size` random (incompressible) bytes; returns the blob."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "main.py").write_text(HANDLER % version)
    blob = os.urandom(blob_size)
    (d / "blob.bin").write_bytes(blob)
    return blob


def invoke_json(gw: Gateway, name: str, *args: str, key: str | None = None) -> dict:
    proc = ok(run(gw, "invoke", name, *args, key=key))
    return json.loads(proc.stdout)


def test_deploy_large_package_streams_over_grpc_and_runs(gw: Gateway, tmp_path: Path) -> None:
    name = unique("big")
    src = tmp_path / "src"
    blob = write_package(src, 1, 1536 * 1024)
    zip_bytes = zip_directory(src)
    assert len(zip_bytes) > MiB

    deployed = ok(
        run(
            gw,
            "deploy",
            name,
            "--runtime",
            "python3.11",
            "--handler",
            "main.handler",
            "--src",
            str(src),
            "--memory",
            "256",
        )
    )
    assert deployed.stdout.splitlines()[0] == f"created function {name}"
    # Piped stderr: plain progress lines, the streaming path and no fallback to the JSON body.
    assert "over gRPC" in deployed.stderr and "(100%)" in deployed.stderr, deployed.stderr
    assert "JSON body instead" not in deployed.stderr and "\r" not in deployed.stderr

    fn = json.loads(ok(run(gw, "--json", "fn", "get", name)).stdout)
    assert fn["code_sha256"] == hashlib.sha256(zip_bytes).hexdigest()
    assert int(fn["code_size"]) == len(zip_bytes) and fn["memory_mb"] == 256

    result = invoke_json(gw, name, "--data", "{}")
    assert result == {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(), "v": 1}

    # Update from a ready .zip file (the `update` stream); new calls run the new code.
    blob2 = write_package(src, 2, 1200 * 1024)
    zip_path = tmp_path / "code.zip"
    zip_path.write_bytes(zip_directory(src))
    updated = ok(run(gw, "deploy", name, "--src", str(zip_path)))
    assert updated.stdout.splitlines()[0] == f"updated function {name}"
    assert "over gRPC" in updated.stderr and "JSON body instead" not in updated.stderr

    def runs_new_code() -> None:
        assert invoke_json(gw, name) == {
            "size": len(blob2),
            "sha256": hashlib.sha256(blob2).hexdigest(),
            "v": 2,
        }

    until_passes(runs_new_code, 5)

    # The same code again: nothing is uploaded.
    again = ok(run(gw, "deploy", name, "--src", str(zip_path)))
    assert "up to date (same code, not uploaded)" in again.stdout and "gRPC" not in again.stderr
    ok(run(gw, "fn", "delete", name))


def test_sdk_streaming_upload_and_its_errors(gw: Gateway, tmp_path: Path) -> None:
    name = unique("sdk-up")
    src = tmp_path / "src"
    write_package(src, 1, 10)
    ok(
        run(
            gw,
            "deploy",
            name,
            "--runtime",
            "python3.11",
            "--handler",
            "main.handler",
            "--src",
            str(src),
        )
    )
    config = ClientConfig(
        endpoint=f"http://127.0.0.1:{gw.port}",
        api_key=gw.api_key,
        endpoint_source="test",
        api_key_source="test",
    )

    blob = write_package(src, 3, 2 * MiB + 7)
    zip_bytes = zip_directory(src)
    seen: list[tuple[int, int]] = []
    fn = upload_code(
        config, name, zip_bytes, progress=lambda sent, total: seen.append((sent, total))
    )
    assert fn["name"] == name and fn["code_sha256"] == hashlib.sha256(zip_bytes).hexdigest()
    assert seen[0] == (0, len(zip_bytes)) and seen[-1] == (len(zip_bytes), len(zip_bytes))
    until_passes(
        lambda: _assert_equal(invoke_json(gw, name)["sha256"], hashlib.sha256(blob).hexdigest()), 5
    )

    with pytest.raises(NimbusApiError) as exc:
        upload_code(config, unique("missing"), zip_bytes)
    assert exc.value.status == 404
    with pytest.raises(NimbusApiError) as exc:
        upload_code(config, name, b"this is not a zip" * 1000)
    assert exc.value.status == 400
    with pytest.raises(NimbusApiError) as exc:
        upload_code(ClientConfig(config.endpoint, "not-a-key", "test", "test"), name, zip_bytes)
    assert exc.value.status == 401
    ok(run(gw, "fn", "delete", name))


def _assert_equal(a: object, b: object) -> None:
    assert a == b


# -- versions and aliases -----------------------------------------------------------------------


def test_versions_and_weighted_alias(gw: Gateway, tmp_path: Path) -> None:
    name = unique("ver")
    src = tmp_path / "src"
    write_package(src, 1, 10)
    ok(
        run(
            gw,
            "deploy",
            name,
            "--runtime",
            "python3.11",
            "--handler",
            "main.handler",
            "--src",
            str(src),
        )
    )
    published = ok(run(gw, "--json", "version", "publish", name, "--description", "first"))
    v1 = json.loads(published.stdout)["version"]

    write_package(src, 2, 10)
    ok(run(gw, "deploy", name, "--src", str(src)))
    human = ok(run(gw, "version", "publish", name))
    assert human.stdout.startswith("published version ") and f" of {name} " in human.stdout
    v2 = json.loads(ok(run(gw, "--json", "version", "list", name)).stdout)["versions"][-1][
        "version"
    ]
    assert v1 != v2

    listed = ok(run(gw, "version", "list", name)).stdout.splitlines()
    assert listed[0].split()[:3] == ["VERSION", "CODE", "CREATED"]
    assert [line.split()[0] for line in listed[1:]] == [v1, v2]
    assert "first" in listed[1]
    assert invoke_json(gw, name, "-q", v1)["v"] == 1 and invoke_json(gw, name, "-q", v2)["v"] == 2

    got = json.loads(ok(run(gw, "--json", "version", "get", name, v1)).stdout)
    assert got["version"] == v1 and got["description"] == "first"

    # An alias on v1 that sends 30 % of the calls to v2.
    bad = run(gw, "alias", "set", name, "live", "--version", v1, "--weight", f"{v2}=1.5")
    assert bad.returncode == 2 and "VERSION=FRACTION" in bad.stderr
    set_ = ok(
        run(
            gw,
            "alias",
            "set",
            name,
            "live",
            "--version",
            v1,
            "--weight",
            f"{v2}=0.3",
            "--description",
            "canary",
        )
    )
    assert set_.stdout.strip() == f"alias live of {name} -> version {v1}, 30% to version {v2}"
    alias = json.loads(ok(run(gw, "--json", "alias", "get", name, "live")).stdout)
    assert alias["version"] == v1 and alias["routing"]["version"] == v2
    assert abs(float(alias["routing"]["weight"]) - 0.3) < 1e-9 and alias["description"] == "canary"
    rows = ok(run(gw, "alias", "list", name)).stdout.splitlines()
    assert rows[1].split()[:5] == ["live", v1, "30%", "to", "version"]

    ran = Counter()
    for _ in range(200):
        res = gw.request("POST", f"/v1/functions/{name}:invoke?qualifier=live", raw=b"{}")
        assert res.status == 200, res.body
        ran[res.headers.get("x-nimbus-executed-version")] += 1
    assert set(ran) == {v1, v2}, ran
    assert 0.15 <= ran[v2] / 200 <= 0.45, ran

    # A version an alias points to cannot be deleted; once the alias is gone it can.
    blocked = run(gw, "version", "delete", name, v1)
    assert blocked.returncode == 1 and "(HTTP 409)" in blocked.stderr, blocked.stderr
    ok(run(gw, "alias", "rm", name, "live"))
    missing = run(gw, "alias", "get", name, "live")
    assert missing.returncode == 1 and "(HTTP 404)" in missing.stderr
    assert ok(run(gw, "version", "delete", name, v1)).stdout == f"deleted version {v1} of {name}\n"
    versions = (
        json.loads(ok(run(gw, "--json", "version", "list", name)).stdout).get("versions") or []
    )
    assert [v["version"] for v in versions] == [v2]
    ok(run(gw, "fn", "delete", name))


# -- keys ---------------------------------------------------------------------------------------


def test_keys_create_list_revoke(gw: Gateway, tmp_path: Path) -> None:
    namespace = unique("tenant")
    human = ok(run(gw, "keys", "create", "--namespace", namespace, "--description", "e2e human"))
    assert "cannot be shown again" in human.stderr
    assert f"namespace {namespace}" in human.stdout.splitlines()[0]

    created = json.loads(
        ok(
            run(gw, "--json", "keys", "create", "--namespace", namespace, "--description", "e2e")
        ).stdout
    )
    key, key_id = created["api_key"], created["key_id"]
    assert key and key_id and created["namespace"] == namespace

    listed = json.loads(ok(run(gw, "--json", "keys", "list")).stdout)
    mine = [k for k in listed["keys"] if k["key_id"] == key_id]
    assert len(mine) == 1 and mine[0]["namespace"] == namespace and not mine[0].get("api_key")
    table = ok(run(gw, "keys", "list")).stdout
    assert key_id in table and key not in table

    # The new key works in its own namespace, and cannot mint keys (not an admin).
    name = unique("tenant-fn")
    src = tmp_path / "src"
    write_package(src, 1, 10)
    ok(
        run(
            gw,
            "deploy",
            name,
            "--runtime",
            "python3.11",
            "--handler",
            "main.handler",
            "--src",
            str(src),
            key=key,
        )
    )
    assert invoke_json(gw, name, key=key)["v"] == 1
    assert name in ok(run(gw, "fn", "list", key=key)).stdout
    assert name not in ok(run(gw, "fn", "list")).stdout  # the admin's namespace does not see it
    forbidden = run(gw, "keys", "create", key=key)
    assert forbidden.returncode == 1 and "(HTTP 403)" in forbidden.stderr, forbidden.stderr
    ok(run(gw, "fn", "delete", name, key=key))

    assert ok(run(gw, "keys", "revoke", key_id)).stdout == f"revoked key {key_id}\n"

    def rejected() -> None:
        res = run(gw, "fn", "list", key=key)
        assert res.returncode == 1 and "(HTTP 401)" in res.stderr, res.stderr

    until_passes(rejected, 5)  # the issue: 401 on every replica within 2 s
