"""The `nimbus` CLI against the real cluster, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

NIMBUS = [sys.executable, "-m", "nimbus.cli"]


def run(gw, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": gw.api_key,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [*NIMBUS, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


@pytest.fixture
def src(tmp_path: Path) -> Path:
    (tmp_path / "main.py").write_text(
        "def handler(event, context):\n    return {'got': event, 'v': 1}\n"
    )
    return tmp_path


def test_deploy_invoke_list_get_delete(gw, src):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    deployed = run(
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
    assert deployed.returncode == 0, deployed.stderr
    assert name in deployed.stdout

    invoked = run(gw, "invoke", name, "--data", '{"a": 1}')
    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"got": {"a": 1}, "v": 1}

    listed = run(gw, "--json", "fn", "list")
    assert listed.returncode == 0
    assert name in [f["name"] for f in json.loads(listed.stdout)["functions"]]

    got = run(gw, "fn", "get", name)
    assert got.returncode == 0 and "python3.11" in got.stdout

    # deploy again with new code: an update, and the next call runs it
    (src / "main.py").write_text(
        "def handler(event, context):\n    return {'got': event, 'v': 2}\n"
    )
    redeployed = run(gw, "deploy", name, "--src", str(src), "--memory", "256")
    assert redeployed.returncode == 0, redeployed.stderr
    assert json.loads(run(gw, "invoke", name, "--data", "{}").stdout)["v"] == 2
    assert json.loads(run(gw, "--json", "fn", "get", name).stdout)["memory_mb"] == 256

    deleted = run(gw, "fn", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    missing = run(gw, "fn", "get", name)
    assert missing.returncode == 1
    assert "not found" in missing.stderr and "404" in missing.stderr


def test_function_error_exits_non_zero(gw, tmp_path):
    (tmp_path / "main.py").write_text(
        "def handler(event, context):\n    raise KeyError('missing')\n"
    )
    name = f"cli-err-{uuid.uuid4().hex[:8]}"
    assert (
        run(
            gw,
            "deploy",
            name,
            "--runtime",
            "python3.11",
            "--handler",
            "main.handler",
            "--src",
            str(tmp_path),
        ).returncode
        == 0
    )
    res = run(gw, "invoke", name)
    assert res.returncode == 1
    assert "KeyError" in res.stderr


def test_invalid_input_shows_the_servers_message(gw, src):
    res = run(
        gw,
        "deploy",
        "bad",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
        "--memory",
        "64",
    )
    assert res.returncode == 1
    assert "memory_mb" in res.stderr and "400" in res.stderr
