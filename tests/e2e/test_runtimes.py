"""nodejs20 and provided (the unmodified awslambdaric, vendored in the zip) through the gateway."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest
from support import Gateway, zip_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

NODE = {
    "index.js": """
exports.handler = async (event, context) => {
  console.log('node says hi', context.awsRequestId);
  if (event.fail) throw new TypeError('node failure: ' + event.fail);
  return {
    echo: event,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    memory: context.memoryLimitInMB,
    left: context.getRemainingTimeInMillis(),
  };
};
""",
}

RIC_BOOTSTRAP = """#!/bin/sh
# The custom runtime's entry point, as on Lambda: start the runtime interface client.
export PYTHONPATH="$LAMBDA_TASK_ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec /usr/bin/python3.11 -m awslambdaric "$_HANDLER"
"""

RIC_FUNCTION = """
def handler(event, context):
    print("awslambdaric handling", context.aws_request_id)
    if event.get("fail"):
        raise ValueError("ric failure: " + str(event["fail"]))
    return {
        "echo": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory": context.memory_limit_in_mb,
        "left": context.get_remaining_time_in_millis(),
        "arn": context.invoked_function_arn,
    }
"""


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deploy(gw: Gateway, name: str, runtime: str, handler: str, zip_bytes: bytes) -> None:
    body = {
        "name": name,
        "runtime": runtime,
        "handler": handler,
        "code": {"zip_base64": base64.b64encode(zip_bytes).decode()},
    }
    res = gw.request("POST", "/v1/functions", body)
    assert res.status == 200, res.body


@pytest.fixture(scope="session")
def awslambdaric_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip install --target` of awslambdaric's cp311 manylinux wheels, for /usr/bin/python3.11;
    downloads are cached in a temp dir for the session."""
    target = tmp_path_factory.mktemp("awslambdaric")
    cache = tmp_path_factory.mktemp("pip-cache")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(target),
        "--cache-dir",
        str(cache),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        "3.11",
        "--abi",
        "cp311",
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "manylinux_2_17_x86_64",
        "--platform",
        "manylinux_2_28_x86_64",
        "--platform",
        "manylinux1_x86_64",
        "--platform",
        "manylinux_2_5_x86_64",
        "awslambdaric",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"pip could not install awslambdaric: {done.stderr[-2000:]}"
    assert (target / "awslambdaric" / "__main__.py").exists()
    return target


def ric_zip(vendored: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o755 << 16
        zf.writestr(info, RIC_BOOTSTRAP)
        zf.writestr("function.py", RIC_FUNCTION)
        for path in sorted(vendored.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                rel = path.relative_to(vendored).as_posix()
                entry = zipfile.ZipInfo(rel)
                entry.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
                zf.writestr(entry, path.read_bytes())
    return buf.getvalue()


async def assert_warm_calls(gw: Gateway, name: str) -> None:
    """Later calls answer too, and the instance stays warm between them (which call the invoker
    counts as the cold one is its business: at least one of three must be warm)."""
    replies = [await asyncio.to_thread(gw.invoke, name, {"n": [i, "x"]}) for i in range(3)]
    assert [r.json()["echo"] for r in replies] == [{"n": [i, "x"]} for i in range(3)]
    assert "false" in [r.headers["x-nimbus-cold-start"] for r in replies]


async def test_nodejs20_through_the_gateway(gw: Gateway) -> None:
    name = unique("node")
    deploy(gw, name, "nodejs20", "index.handler", zip_of(NODE))
    first = await asyncio.to_thread(gw.invoke, name, {"n": 1})
    assert first.status == 200, first.body
    got = first.json()
    assert got["echo"] == {"n": 1} and got["requestId"] == first.headers["x-nimbus-request-id"]
    assert (got["functionName"], got["memory"]) == (name, "128")
    assert 0 < got["left"] <= 3000
    assert (
        first.headers["x-nimbus-cold-start"] == "true"
        and "x-nimbus-function-error" not in first.headers
    )
    await assert_warm_calls(gw, name)

    failed = await asyncio.to_thread(gw.invoke, name, {"fail": "boom"})
    assert failed.status == 200 and failed.headers["x-nimbus-function-error"] == "Unhandled"
    err = failed.json()
    assert (err["errorType"], err["errorMessage"]) == ("TypeError", "node failure: boom")
    assert any("index.js" in line for line in err["stackTrace"])


async def test_provided_runs_the_unmodified_awslambdaric(
    gw: Gateway, awslambdaric_dir: Path
) -> None:
    name = unique("ric")
    deploy(gw, name, "provided", "function.handler", ric_zip(awslambdaric_dir))
    first = await asyncio.to_thread(gw.invoke, name, {"hello": "ric"}, timeout=90)
    assert first.status == 200, first.body
    got = first.json()
    assert got["echo"] == {"hello": "ric"}
    assert got["request_id"] == first.headers["x-nimbus-request-id"]
    assert (got["function_name"], got["memory"]) == (name, "128")
    assert 0 < got["left"] <= 3000
    assert got["arn"].endswith(f":function:{name}")
    assert first.headers["x-nimbus-cold-start"] == "true"
    await assert_warm_calls(gw, name)

    failed = await asyncio.to_thread(gw.invoke, name, {"fail": 7})
    assert failed.status == 200 and failed.headers["x-nimbus-function-error"] == "Unhandled"
    err = failed.json()
    assert (err["errorType"], err["errorMessage"]) == ("ValueError", "ric failure: 7")
    assert isinstance(err["stackTrace"], list) and any(
        "function.py" in line for line in err["stackTrace"]
    )
    # The runtime keeps serving after a handler error.
    assert (await asyncio.to_thread(gw.invoke, name, {"again": True})).json()["echo"] == {
        "again": True
    }
