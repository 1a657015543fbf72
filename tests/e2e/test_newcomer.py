"""Issue 26, newcomer polish, through the gateway: what a first-hour user sees in HTTP bodies and
in the CLI's output when something is off."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from support import zip_of

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


# -- 26.3 ------------------------------------------------------------------------------------------


def test_a_zipped_folder_is_refused_with_what_was_found(gw):
    res = gw.create(unique("folder"), {"hello/main.py": "def handler(e, c): return 1\n"})
    assert res.status == 400, res.body
    message = res.json()["message"]
    assert "it has hello/main.py" in message and "cd hello && zip -r ../code.zip ." in message


# -- 26.6 ------------------------------------------------------------------------------------------


def test_a_404_names_the_namespace(gw):
    res = gw.request("GET", f"/v1/functions/{unique('missing')}")
    assert res.status == 404 and "not found in namespace '" in res.json()["message"], res.body


def test_a_401_names_where_the_key_came_from(gw):
    done = cli(gw, "fn", "list", key="nmb_not_a_key")
    assert done.returncode == 1 and "(HTTP 401)" in done.stderr
    assert "the API key came from the environment variable NIMBUS_API_KEY" in done.stderr


# -- 26.9 ------------------------------------------------------------------------------------------


def test_a_handler_the_module_does_not_define_is_deployed_with_a_warning(gw):
    name = unique("handle")
    files = {"main.py": "def handler(event, context):\n    return 1\n"}
    created = gw.create(name, files, handler="main.handle")
    assert created.status == 200, created.body
    [warning] = created.json()["warnings"]
    assert "'handle'" in warning and "did you mean main.handler?" in warning
    assert gw.request("GET", f"/v1/functions/{name}").json()["warnings"] == []
    # A code update that defines it answers no warning.
    fixed = zip_of({"main.py": "def handle(event, context):\n    return 2\n"})
    updated = gw.request(
        "PUT",
        f"/v1/functions/{name}/code",
        {"code": {"zip_base64": base64.b64encode(fixed).decode()}},
    )
    assert updated.status == 200 and updated.json()["warnings"] == [], updated.body
    assert gw.invoke(name, {}).json() == 2
    # So does a PATCH of the handler, checked against the stored code.
    patched = gw.request("PATCH", f"/v1/functions/{name}", {"handler": "main.handel"})
    assert patched.status == 200, patched.body
    assert "did you mean main.handle?" in patched.json()["warnings"][0]
    # v2 carries them too.
    name2 = unique("handle2")
    body = {
        "name": name2,
        "runtime": "python3.11",
        "handler": "main.handle",
        "code": {"zip_base64": base64.b64encode(zip_of(files)).decode()},
    }
    res = gw.request("POST", "/v2/functions", body)
    assert res.status == 200 and len(res.json()["warnings"]) == 1, res.body


def test_the_cli_prints_the_warning_at_deploy(gw, tmp_path: Path):
    (tmp_path / "main.py").write_text("def handler(event, context):\n    return 1\n")
    name = unique("clihandle")
    done = cli(
        gw, "deploy", name, "--runtime", "python3.11", "--handler", "main.handle",
        "--src", str(tmp_path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "warning: handler: main.py has no top-level def" in done.stderr, done.stderr


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


# -- 26.5 ------------------------------------------------------------------------------------------


def test_logs_show_the_newest_lines_by_default_and_with_tail(gw, tmp_path: Path):
    (tmp_path / "main.py").write_text(
        "def handler(event, context):\n"
        "    for i in range(event['n']):\n"
        "        print(f\"{event['tag']} line {i}\")\n"
        "    return 1\n"
    )
    name = unique("tail")
    deployed = cli(
        gw, "deploy", name, "--runtime", "python3.11", "--handler", "main.handler",
        "--src", str(tmp_path),
    )  # fmt: skip
    assert deployed.returncode == 0, deployed.stderr
    assert gw.invoke(name, {"n": 600, "tag": "first"}).status == 200
    assert gw.invoke(name, {"n": 600, "tag": "second"}).status == 200
    deadline = time.monotonic() + 30
    while True:  # the node ships logs about once a second
        default = cli(gw, "logs", name)
        if "second line 599" in default.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    rows = [r for r in default.stdout.splitlines() if " line " in r]
    assert default.returncode == 0 and rows[-1].endswith("second line 599"), default.stdout[-500:]
    # The newest 1000 of the window: the first call's oldest lines are not among them.
    assert not any(r.endswith("first line 0") for r in rows)
    assert "the newest 1000 of" in default.stderr, default.stderr
    tail = cli(gw, "logs", name, "--tail", "3")
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 3, tail.stdout
    oldest = cli(gw, "logs", name, "--limit", "5")
    assert any(r.endswith("first line 0") for r in oldest.stdout.splitlines()), oldest.stdout


def test_every_error_body_names_its_status_in_one_shape(gw):
    """Issue 26.7: the transcoded api errors, the invoker's own and Envoy's local replies all
    answer {"code", "status", "message", "details"}, compact; a function's own error body passes
    through an HTTP trigger untouched."""
    name = unique("errs")
    bodies = {
        # api, through the transcoder
        "api 404": gw.request("GET", "/v1/functions/no-such-function"),
        "api 400": gw.request("POST", "/v1/functions", {"name": "1bad"}),
        # the invoker's REST listener
        "invoke 404": gw.request("POST", "/v1/functions/no-such-function:invoke", raw=b"{}"),
        "invoke 400": gw.request("POST", "/v1/functions/no-such-function:invoke", raw=b"{x"),
        "invoke 401": gw.request("POST", "/v1/functions/x:invoke", raw=b"{}", key="nmb_nope"),
        # Envoy's own reply (no route for a gRPC method on REST)
        "gateway 413": gw.request(
            "POST",
            "/v1/functions",
            raw=b'{"name": "huge", "code": {"zip_base64": "' + b"A" * (70 << 20) + b'"}}',
            timeout=120,
        ),
    }
    expected = {
        "api 404": (404, "NOT_FOUND"),
        "api 400": (400, "INVALID_ARGUMENT"),
        "invoke 404": (404, "NOT_FOUND"),
        "invoke 400": (400, "INVALID_ARGUMENT"),
        "invoke 401": (401, "UNAUTHENTICATED"),
        "gateway 413": (413, "OUT_OF_RANGE"),
    }
    for what, res in bodies.items():
        status, name_ = expected[what]
        assert res.status == status, (what, res.status, res.body[:200])
        error = res.json()
        assert error["status"] == name_ and error["message"], (what, error)
        assert set(error) == {"code", "status", "message", "details"}, (what, error)
        assert b'": ' not in res.body[:60], (what, res.body[:60])  # compact, as the transcoder's

    # A function that answers its own error JSON through its HTTP trigger keeps it as it is.
    own = (
        "import json\n"
        "def handler(event, context):\n"
        "    return {'statusCode': 503, 'headers': {'content-type': 'application/json'},\n"
        "            'body': json.dumps({'code': 14, 'message': 'mine'})}\n"
    )
    assert gw.create(name, {"main.py": own}).status == 200
    res = gw.request("POST", f"/v1/functions/{name}/triggers", {"type": "http"})
    assert res.status == 200, res.body
    namespace = gw.request("GET", f"/v1/functions/{name}").json()["namespace"]
    res = gw.request("GET", f"/fn/{namespace}/{name}", key=None)
    assert res.status == 503 and res.json() == {"code": 14, "message": "mine"}, res.body
