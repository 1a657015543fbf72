"""Issue 26, newcomer polish, through the gateway: what a first-hour user sees in HTTP bodies and
in the CLI's output when something is off."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

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
