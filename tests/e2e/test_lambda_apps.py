"""Lambda apps people deploy, unchanged, through an HTTP trigger (issue 24).

Each app is one of examples/ (a Powertools REST app and a Powertools HTTP API app (payload 2.0),
FastAPI through Mangum, Flask through serverless-wsgi, a callback-style Node.js handler, Express
through serverless-http), its
dependencies installed from PyPI / npm as its users install them (pip --target, npm install),
cached between runs (examples/deploy.py; NIMBUS_APPS_CACHE, default ~/.cache/nimbus-test-apps),
zipped and deployed by `examples/deploy.py` (`nimbus deploy` and `nimbus trigger add`), with no
base-path setting: the event's path is relative to the trigger's mount point, on the shared origin
(/fn/{ns}/{name}) and the namespace's own ({ns}.fn.localhost/{name}) alike. Each answers as on
Lambda, and its errors reach its log with their stack while the HTTP client sees none of it.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid
from http.client import HTTPConnection
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support import Gateway, Response

from tests.support import until

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(600)]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def examples() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nimbus_examples_deploy", EXAMPLES / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli_env(gw: Gateway) -> dict[str, str]:
    return {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": gw.api_key,
    }


async def deploy(
    gw: Gateway, examples: ModuleType, app: str, payload_format: str | None = None
) -> tuple[str, str]:
    """(function name, trigger path) of the example deployed under a fresh name."""
    name = f"{app.split('-')[0]}-{uuid.uuid4().hex[:8]}"
    path = await asyncio.to_thread(
        examples.deploy, EXAMPLES / app, name, cli_env(gw), payload_format
    )
    return name, path


async def http(
    gw: Gateway, method: str, path: str, body: Any = None, *, headers_json: bool = True
) -> Response:
    """A public call of the trigger (no API key); waits out the trigger's propagation (404)."""
    raw = json.dumps(body).encode() if body is not None else None

    def call() -> Response | None:
        res = gw.request(method, path, key=None, raw=raw, timeout=90)
        if res.status == 404 and b"no function at" in res.body:
            return None
        return res

    return await until(call, 30, f"{method} {path}", 0.3, in_thread=True)


async def host_call(
    gw: Gateway,
    method: str,
    trigger: str,
    rest: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A call of the trigger (/fn/{ns}/{name}) on its namespace's own origin:
    http://{ns}.fn.localhost:{port}/{name}{rest}."""
    _, _, ns, name = trigger.split("/")
    target = f"/{name}{rest}"

    def call() -> tuple[int, list[tuple[str, str]], bytes]:
        conn = HTTPConnection("127.0.0.1", gw.port, timeout=90)
        try:
            sent = {"Host": f"{ns}.fn.localhost:{gw.port}", **(headers or {})}
            conn.request(method, target, body=body, headers=sent)
            res = conn.getresponse()
            return res.status, [(k.lower(), v) for k, v in res.getheaders()], res.read()
        finally:
            conn.close()

    return await asyncio.to_thread(call)


async def call_log(gw: Gateway, name: str, request_id: str) -> list[str]:
    """The messages of one call's log, once its REPORT line is in."""

    def complete() -> list[str] | None:
        res = gw.request("GET", f"/v1/functions/{name}/logs?request_id={request_id}")
        assert res.status == 200, res.body
        lines = [line["message"] for line in res.json()["lines"]]
        return lines if any(m.startswith("REPORT RequestId:") for m in lines) else None

    return await until(complete, 60, f"the log of {request_id}", 0.3, in_thread=True)


def assert_hidden(res: Response, status: int, *secrets: str) -> None:
    assert res.status == status, res.body
    for secret in ("Traceback", *secrets):
        assert secret.encode() not in res.body


def assert_arn(arn: str, name: str) -> None:
    parts = arn.split(":")
    assert parts[:4] == ["arn", "aws", "lambda", "us-east-1"] and parts[5:] == ["function", name]
    assert re.fullmatch(r"\d{12}", parts[4])


async def test_powertools_rest_app(gw: Gateway, examples: ModuleType) -> None:
    name, path = await deploy(gw, examples, "powertools-rest")
    hello = await http(gw, "GET", f"{path}/hello/world")
    assert hello.status == 200, hello.body
    rid = hello.headers["x-nimbus-request-id"]
    assert hello.json() == {"message": "hello world", "request_id": rid}
    assert hello.headers["content-type"] == "application/json"
    status, _, body = await host_call(gw, "GET", path, "/hello/host")
    assert status == 200 and json.loads(body)["message"] == "hello host"

    order = await http(gw, "POST", f"{path}/orders?x=1", {"sku": "A-1", "n": 2})
    assert order.status == 201 and order.headers["x-order"] == "yes"
    assert order.json() == {"created": {"sku": "A-1", "n": 2}, "query": {"x": "1"}}
    missing = await http(gw, "GET", f"{path}/no/such/route")
    assert missing.status == 404 and missing.json() == {"statusCode": 404, "message": "Not found"}

    # Logger.inject_lambda_context: the context's fields in every structured line.
    lines = await call_log(gw, name, rid)
    logged = [json.loads(m) for m in lines if m.startswith("{") and '"saying hello"' in m]
    assert len(logged) == 1, lines
    entry = logged[0]
    assert (entry["level"], entry["who"], entry["service"]) == ("INFO", "world", "greeter")
    assert (entry["function_name"], entry["function_request_id"]) == (name, rid)
    assert str(entry["function_memory_size"]) == "256" and isinstance(entry["cold_start"], bool)
    assert_arn(entry["function_arn"], name)
    # Metrics: one EMF document on stdout.
    emf = [json.loads(m) for m in lines if m.startswith("{") and '"_aws"' in m]
    assert len(emf) == 1 and emf[0]["Greetings"] == [1.0]
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "NimbusExamples"

    boom = await http(gw, "GET", f"{path}/boom")
    assert_hidden(boom, 502, "kaboom")
    assert boom.json() == {"message": "Internal server error"}
    lines = await call_log(gw, name, boom.headers["x-nimbus-request-id"])
    at = lines.index("[ERROR] RuntimeError: kaboom from a route")
    assert lines[at + 1] == "Traceback (most recent call last):"
    assert any('app.py", line' in m and "in boom" in m for m in lines[at + 2 :])


async def test_powertools_http_api_app(gw: Gateway, examples: ModuleType) -> None:
    """Payload 2.0 (the example's nimbus.json asks for it): an APIGatewayHttpResolver app."""
    name, path = await deploy(gw, examples, "powertools-http")
    hello = await http(gw, "GET", f"{path}/hello/ada")
    assert hello.status == 200, hello.body
    assert hello.json() == {"message": "hello ada", "path": "/hello/ada", "cookies": []}
    rid = hello.headers["x-nimbus-request-id"]
    # Its namespace's own origin: the same relative path, and cookies both ways.
    status, _, body = await host_call(
        gw, "GET", path, "/hello/bob", headers={"Cookie": "sid=1; theme=dark"}
    )
    assert status == 200 and json.loads(body)["cookies"] == ["sid=1", "theme=dark"]
    order = json.dumps({"sku": "A-1"}).encode()
    status, headers, body = await host_call(
        gw, "POST", path, "/orders?x=1", order, {"Content-Type": "application/json"}
    )
    assert status == 201 and json.loads(body) == {"created": {"sku": "A-1"}, "query": {"x": "1"}}
    cookies = [v for k, v in headers if k == "set-cookie"]
    assert len(cookies) == 1 and cookies[0].startswith("last_order=A-1"), cookies
    # The shared origin keeps no cookies.
    shared = await http(gw, "POST", f"{path}/orders", {"sku": "B"})
    assert shared.status == 201 and "set-cookie" not in shared.headers

    # Binary both ways: a PNG out, bytes in (base64 in the event).
    pixel = await http(gw, "GET", f"{path}/pixel.png")
    assert pixel.status == 200 and pixel.body.startswith(b"\x89PNG\r\n")
    assert pixel.headers["content-type"] == "image/png"
    blob = bytes(range(256)) * 4
    status, _, body = await host_call(
        gw, "POST", path, "/digest", blob, {"Content-Type": "application/octet-stream"}
    )
    assert status == 200 and json.loads(body) == {
        "base64": True,
        "size": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }

    missing = await http(gw, "GET", f"{path}/no/such/route")
    assert missing.status == 404 and missing.json() == {"statusCode": 404, "message": "Not found"}
    lines = await call_log(gw, name, rid)
    logged = [json.loads(m) for m in lines if m.startswith("{") and '"saying hello"' in m]
    assert len(logged) == 1 and logged[0]["service"] == "shop", lines
    assert (logged[0]["function_name"], logged[0]["function_request_id"]) == (name, rid)

    boom = await http(gw, "GET", f"{path}/boom")
    assert_hidden(boom, 502, "kaboom")
    lines = await call_log(gw, name, boom.headers["x-nimbus-request-id"])
    assert "[ERROR] RuntimeError: kaboom from an HTTP API route" in lines, lines


async def test_fastapi_through_mangum(gw: Gateway, examples: ModuleType) -> None:
    name, path = await deploy(gw, examples, "fastapi-mangum")
    item = await http(gw, "GET", f"{path}/items/1?q=red")
    assert item.status == 200, item.body
    assert item.json() == {"id": 1, "item": {"name": "apple", "price": 0.5}, "q": "red"}
    assert item.headers["content-type"] == "application/json"
    status, _, body = await host_call(gw, "GET", path, "/items/1")
    assert status == 200 and json.loads(body)["id"] == 1
    missing = await http(gw, "GET", f"{path}/items/9")
    assert missing.status == 404 and missing.json() == {"detail": "no such item"}
    created = await http(gw, "POST", f"{path}/items", {"name": "pear", "price": 1.25})
    assert created.status == 201 and created.json() == {"created": {"name": "pear", "price": 1.25}}
    invalid = await http(gw, "POST", f"{path}/items", {"name": "pear"})
    assert invalid.status == 422 and invalid.json()["detail"][0]["loc"] == ["body", "price"]

    boom = await http(gw, "GET", f"{path}/boom")
    assert_hidden(boom, 500, "kaboom")
    # Mangum logs the app's exception through `logging`: Lambda's root handler writes it.
    lines = await call_log(gw, name, boom.headers["x-nimbus-request-id"])
    text = "\n".join(lines)
    assert re.search(r"^\[ERROR\]\t\S+Z\t[0-9a-f-]+\t", text, re.M), text
    assert "ValueError: kaboom from FastAPI" in text


async def test_flask_through_serverless_wsgi(gw: Gateway, examples: ModuleType) -> None:
    name, path = await deploy(gw, examples, "flask-serverless-wsgi")
    index = await http(gw, "GET", f"{path}/")
    assert index.status == 200, index.body
    assert index.json()["hello"] == "flask"
    status, _, body = await host_call(gw, "GET", path, "/")
    assert status == 200 and json.loads(body)["hello"] == "flask"
    echo = await http(gw, "POST", f"{path}/echo?a=1", {"k": [1, 2]})
    assert echo.status == 201 and echo.json() == {"json": {"k": [1, 2]}, "args": {"a": "1"}}

    boom = await http(gw, "GET", f"{path}/boom")
    assert_hidden(boom, 500, "kaboom")
    lines = await call_log(gw, name, boom.headers["x-nimbus-request-id"])
    assert "KeyError: 'kaboom from Flask'" in lines, lines


async def test_node_callback_handler(gw: Gateway) -> None:
    # The one command of the README, as a user runs it: it prints the trigger's URL.
    name = f"node-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, str(EXAMPLES / "deploy.py"), "node-callback", "--name", name]
    done = await asyncio.to_thread(
        subprocess.run, cmd, env=cli_env(gw), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    prefix = f"http://127.0.0.1:{gw.port}/fn/"
    assert url.startswith(prefix) and url.endswith(f"/{name}"), url
    path = url.removeprefix(f"http://127.0.0.1:{gw.port}")
    res = await http(gw, "POST", f"{path}/anything?x=1", {"hello": "node"})
    assert res.status == 200, res.body
    assert res.headers["x-style"] == "callback"
    got = res.json()
    assert got["requestId"] == res.headers["x-nimbus-request-id"]
    assert (got["method"], got["function"], got["region"]) == ("POST", name, "us-east-1")
    assert json.loads(got["body"]) == {"hello": "node"}
    assert_arn(got["arn"], name)

    failed = await http(gw, "GET", f"{path}?fail=yes")
    assert_hidden(failed, 502, "failing on purpose")
    assert failed.json() == {"message": "Internal server error"}
    rid = failed.headers["x-nimbus-request-id"]
    lines = await call_log(gw, name, rid)
    line = next(m for m in lines if "\tERROR\tInvoke Error \t" in m)
    assert line.split("\t")[1] == rid
    error = json.loads(line.split("\t", 4)[4])
    assert (error["errorType"], error["errorMessage"]) == ("Error", "failing on purpose: yes")
    assert any("index.js" in frame for frame in error["stack"])


async def test_express_through_serverless_http(gw: Gateway, examples: ModuleType) -> None:
    name, path = await deploy(gw, examples, "express-serverless-http")
    user = await http(gw, "GET", f"{path}/users/42?q=z")
    assert user.status == 200, user.body
    assert user.json() == {"id": "42", "q": "z"} and user.headers["x-framework"] == "express"
    status, _, body = await host_call(gw, "GET", path, "/users/7?q=h")
    assert status == 200 and json.loads(body) == {"id": "7", "q": "h"}
    created = await http(gw, "POST", f"{path}/users", {"name": "ada"})
    assert created.status == 201 and created.json() == {"created": {"name": "ada"}}
    missing = await http(gw, "GET", f"{path}/nowhere")
    assert missing.status == 404

    boom = await http(gw, "GET", f"{path}/boom")
    assert boom.status == 500
    lines = await call_log(gw, name, boom.headers["x-nimbus-request-id"])
    assert any("Error: kaboom from Express" in m for m in lines), lines


@pytest.mark.parametrize(
    ("app", "calls"),
    [
        (
            "fastapi-mangum",
            [
                (
                    "GET",
                    "/items/1?q=red",
                    None,
                    200,
                    {"id": 1, "item": {"name": "apple", "price": 0.5}, "q": "red"},
                ),
                (
                    "POST",
                    "/items",
                    {"name": "pear", "price": 1.25},
                    201,
                    {"created": {"name": "pear", "price": 1.25}},
                ),
            ],
        ),
        (
            "flask-serverless-wsgi",
            [("POST", "/echo?a=1&a=2", {"k": 1}, 201, {"json": {"k": 1}, "args": {"a": "1"}})],
        ),
        (
            "express-serverless-http",
            [
                ("GET", "/users/42?q=z", None, 200, {"id": "42", "q": "z"}),
                ("POST", "/users", {"name": "ada"}, 201, {"created": {"name": "ada"}}),
            ],
        ),
    ],
)
async def test_the_framework_apps_on_payload_2_0(
    gw: Gateway,
    examples: ModuleType,
    app: str,
    calls: list[tuple[str, str, Any, int, Any]],
) -> None:
    """The same apps, their trigger in payload 2.0: each adapter reads the HTTP API event (rawPath,
    rawQueryString, cookies) and answers in it, on both origins."""
    _, path = await deploy(gw, examples, app, "2.0")
    for method, rest, body, status, expected in calls:
        res = await http(gw, method, path + rest, body)
        assert (res.status, res.json()) == (status, expected), (app, method, rest)
        raw = json.dumps(body).encode() if body is not None else None
        code, _, answer = await host_call(
            gw, method, path, rest, raw, {"Content-Type": "application/json"}
        )
        assert (code, json.loads(answer)) == (status, expected), (app, method, rest, "host")
