"""Issue 26, newcomer polish, through the gateway: what a first-hour user sees in HTTP bodies and
in the CLI's output when something is off."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

NIMBUS = [sys.executable, "-m", "nimbus.cli"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def cli(gw, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": key or gw.api_key,
        "NO_COLOR": "1",
    }
    return subprocess.run(
        [*NIMBUS, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


# -- 26.1 ------------------------------------------------------------------------------------------


async def test_the_gateways_413_names_the_limit_and_the_streaming_upload(gw):
    body = (
        b'{"name": "huge", "runtime": "python3.11", "handler": "main.handler", '
        b'"code": {"zip_base64": "' + b"A" * (70 * 1024 * 1024) + b'"}}'
    )
    res = await asyncio.to_thread(gw.request, "POST", "/v1/functions", raw=body, timeout=120)
    assert res.status == 413, res.body[:300]
    message = res.json()["message"]
    assert "NIMBUS_MAX_ZIP_MB" in message and "50 MiB" in message, message
    assert "UploadCode" in message and "Payload Too Large" not in message


# -- 26.2 ------------------------------------------------------------------------------------------


def test_an_http_trigger_prints_a_url_that_answers(gw, tmp_path: Path):
    (tmp_path / "main.py").write_text(
        "def handler(event, context):\n    return {'statusCode': 200, 'body': 'hi from url'}\n"
    )
    name = unique("url")
    deployed = cli(
        gw, "deploy", name, "--runtime", "python3.11", "--handler", "main.handler",
        "--src", str(tmp_path),
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    added = cli(gw, "trigger", "add", name, "--type", "http")
    assert added.returncode == 0, added.stderr
    url = next(w for w in added.stdout.split() if w.startswith("http://"))
    assert url.startswith(f"http://127.0.0.1:{gw.port}/fn/") and url.endswith(f"/{name}")
    with urllib.request.urlopen(url, timeout=30) as res:
        assert res.read() == b"hi from url"
    listed = cli(gw, "trigger", "list", name)
    assert listed.returncode == 0 and url in listed.stdout, listed.stdout
    assert json.loads(cli(gw, "--json", "trigger", "list", name).stdout)["triggers"]
