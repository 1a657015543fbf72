"""Issue 24.3 against the real cluster: HTTP triggers in payload format 1.0 (API Gateway REST) and
2.0 (HTTP API / function URL), chosen per trigger, on both origins (the shared /fn/{ns}/{name}
and the namespace's own {ns}.fn.{domain}/{name}), with the path relative to the mount point,
cookies, repeated headers and query parameters, and binary bodies both ways."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from support import Gateway

from tests.support import until

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(300)]

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00"
# One function for every case: what it answers depends on the path below its mount point.
CODE = {
    "main.py": (
        "import base64, hashlib, json\n"
        "PNG = " + repr(PNG) + "\n"
        "def handler(event, context):\n"
        "    path = event.get('rawPath') or event.get('path')\n"
        "    if path == '/bare-string':\n"
        "        return 'hello bare'\n"
        "    if path == '/bare-object':\n"
        "        return {'k': [1, 2]}\n"
        "    if path == '/png':\n"
        "        return {'statusCode': 200, 'headers': {'Content-Type': 'image/png'},\n"
        "                'body': base64.b64encode(PNG).decode(), 'isBase64Encoded': True}\n"
        "    if path == '/upload':\n"
        "        raw = event.get('body') or ''\n"
        "        data = base64.b64decode(raw) if event['isBase64Encoded'] else raw.encode()\n"
        "        return {'statusCode': 201, 'body': json.dumps({\n"
        "            'b64': event['isBase64Encoded'], 'sha': hashlib.sha256(data).hexdigest()})}\n"
        "    return {'statusCode': 200, 'headers': {'Content-Type': 'application/json'},\n"
        "            'multiValueHeaders': {'x-multi': ['a', 'b']},\n"
        "            'cookies': ['seen=1; Path=/'], 'body': json.dumps(event)}\n"
    )
}


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Origin:
    """Where a function's trigger is called: the host and the path of its mount point."""

    host: str
    mount: str
    own: bool


def origins(gw: Gateway, ns: str, name: str) -> list[Origin]:
    return [
        Origin(f"127.0.0.1:{gw.port}", f"/fn/{ns}/{name}", own=False),
        Origin(f"{ns}.fn.localhost:{gw.port}", f"/{name}", own=True),
    ]


def send(
    gw: Gateway,
    method: str,
    origin: Origin,
    path: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes | None = None,
) -> Reply:
    """One request as curl sends it, repeated headers kept."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    try:
        conn.putrequest(method, origin.mount + path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", origin.host)
        for key, value in headers:
            conn.putheader(key, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        res = conn.getresponse()
        return Reply(res.status, [(k.lower(), v) for k, v in res.getheaders()], res.read())
    finally:
        conn.close()


async def ready(gw: Gateway, origin: Origin) -> None:
    """Waits out the trigger's propagation to the invokers (404 until then)."""

    def check() -> bool:
        return send(gw, "GET", origin, "/bare-object").status == 200

    await until(check, 30, f"{origin.mount} on {origin.host}", 0.2, in_thread=True)


def cli_env(gw: Gateway) -> dict[str, str]:
    return {
        **os.environ,
        "NIMBUS_ENDPOINT": f"http://127.0.0.1:{gw.port}",
        "NIMBUS_API_KEY": gw.api_key,
    }


@pytest.fixture(scope="module")
def functions(gw: Gateway) -> dict[str, tuple[str, str]]:
    """payload format → (namespace, name): a 1.0 trigger made by REST without the field (the
    default), a 2.0 one by the CLI's --payload-format."""
    made: dict[str, tuple[str, str]] = {}
    for fmt in ("1.0", "2.0"):
        name = f"payload{fmt[0]}-{uuid.uuid4().hex[:8]}"
        assert gw.create(name, CODE).status == 200
        ns = gw.request("GET", f"/v1/functions/{name}").json()["namespace"]
        if fmt == "1.0":
            res = gw.request("POST", f"/v1/functions/{name}/triggers", {"type": "http"})
            assert res.status == 200, res.body
            trigger = res.json()
        else:
            cmd = [sys.executable, "-m", "nimbus.cli", "trigger", "add", name, "--type", "http"]
            cmd += ["--payload-format", "2.0", "--json"]
            done = subprocess.run(cmd, env=cli_env(gw), capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            trigger = json.loads(done.stdout)
        assert trigger["payload_format"] == fmt and trigger["url"] == f"/fn/{ns}/{name}"
        made[fmt] = (ns, name)
    return made


def test_the_payload_format_is_stored_listed_and_checked(
    gw: Gateway, functions: dict[str, tuple[str, str]]
) -> None:
    for fmt, (_, name) in functions.items():
        listed = gw.request("GET", f"/v1/functions/{name}/triggers").json()["triggers"]
        assert [t["payload_format"] for t in listed] == [fmt]
        assert (
            gw.request("GET", f"/v1/functions/{name}/triggers/http").json()["payload_format"] == fmt
        )
    name = functions["1.0"][1]
    bad = gw.request(
        "POST", f"/v1/functions/{name}/triggers", {"type": "http", "payload_format": "3.0"}
    )
    assert bad.status == 400 and b"payload_format" in bad.body
    timer = {"type": "timer", "schedule": "@every 1h", "payload_format": "2.0"}
    bad = gw.request("POST", f"/v1/functions/{name}/triggers", timer)
    assert bad.status == 400 and b"only an http trigger" in bad.body
    res = gw.request(
        "POST", f"/v1/functions/{name}/triggers", {"type": "timer", "schedule": "@every 1h"}
    )
    assert res.status == 200 and res.json().get("payload_format", "") == ""
    assert gw.request("DELETE", f"/v1/functions/{name}/triggers/{res.json()['id']}").status == 200


# A header sent twice (Envoy folds repeats of the headers it knows, such as Accept, into one line
# before the invoker sees them; others, like this one, it passes as they came).
ASKED = [
    ("X-Tag", "red"),
    ("X-Tag", "blue"),
    ("Cookie", "sid=1; theme=dark"),
    ("User-Agent", "payload-test/1"),
]


@pytest.mark.parametrize("own", [False, True], ids=["shared-origin", "own-origin"])
async def test_a_1_0_event_is_relative_to_the_mount_point(
    gw: Gateway, functions: dict[str, tuple[str, str]], own: bool
) -> None:
    ns, name = functions["1.0"]
    origin = next(o for o in origins(gw, ns, name) if o.own == own)
    await ready(gw, origin)
    res = send(gw, "GET", origin, "/users/9?a=1&a=2&b=x%20y", ASKED)
    assert res.status == 200, res.body
    event = res.json()
    assert (event["path"], event["resource"], event["pathParameters"]) == (
        "/users/9",
        "/{proxy+}",
        {"proxy": "users/9"},
    )
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"]}
    assert event["queryStringParameters"] == {"a": "2", "b": "x y"}
    assert event["multiValueHeaders"]["x-tag"] == ["red", "blue"]
    assert event["headers"]["x-tag"] == "blue"
    context = event["requestContext"]
    assert context["mountPath"] == origin.mount and context["stage"] == "$default"
    assert context["path"] == origin.mount + "/users/9"
    assert context["domainName"] == origin.host and context["identity"]["sourceIp"] == "127.0.0.1"
    # Cookies both ways on the namespace's own origin; none on the shared one.
    assert ("cookie" in event["headers"]) is own
    assert res.values("set-cookie") == (["seen=1; Path=/"] if own else [])
    assert res.values("x-multi") == ["a", "b"]
    root = send(gw, "GET", origin, "").json()
    assert (root["path"], root["resource"], root["pathParameters"]) == ("/", "/", None)


@pytest.mark.parametrize("own", [False, True], ids=["shared-origin", "own-origin"])
async def test_a_2_0_event_is_a_function_url_event(
    gw: Gateway, functions: dict[str, tuple[str, str]], own: bool
) -> None:
    ns, name = functions["2.0"]
    origin = next(o for o in origins(gw, ns, name) if o.own == own)
    await ready(gw, origin)
    res = send(gw, "GET", origin, "/users/9?a=1&a=2&b=x%20y", ASKED)
    assert res.status == 200, res.body
    event = res.json()
    assert (event["version"], event["routeKey"]) == ("2.0", "$default")
    assert (event["rawPath"], event["rawQueryString"]) == ("/users/9", "a=1&a=2&b=x%20y")
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["headers"]["x-tag"] == "red,blue"
    assert "cookie" not in event["headers"]
    assert event.get("cookies") == (["sid=1", "theme=dark"] if own else None)
    http_ = event["requestContext"]["http"]
    assert (http_["method"], http_["path"], http_["sourceIp"], http_["userAgent"]) == (
        "GET",
        "/users/9",
        "127.0.0.1",
        "payload-test/1",
    )
    assert event["requestContext"]["mountPath"] == origin.mount
    assert "body" not in event and event["isBase64Encoded"] is False
    assert res.values("set-cookie") == (["seen=1; Path=/"] if own else [])
    assert res.values("x-multi") == []  # multiValueHeaders is not part of 2.0
    assert send(gw, "GET", origin, "").json()["rawPath"] == "/"


@pytest.mark.parametrize("fmt", ["1.0", "2.0"])
async def test_binary_bodies_both_ways(
    gw: Gateway, functions: dict[str, tuple[str, str]], fmt: str
) -> None:
    ns, name = functions[fmt]
    for origin in origins(gw, ns, name):
        await ready(gw, origin)
        png = send(gw, "GET", origin, "/png")
        assert png.status == 200 and png.body == PNG and png.values("content-type") == ["image/png"]
        up = send(gw, "POST", origin, "/upload", [("Content-Type", "image/png")], PNG)
        assert up.status == 201, up.body
        assert up.json() == {"b64": True, "sha": hashlib.sha256(PNG).hexdigest()}
        text = "naïve ✓".encode()
        for content_type, b64 in (
            ("text/plain", False),
            ("application/octet-stream", fmt == "2.0"),
        ):
            up = send(gw, "POST", origin, "/upload", [("Content-Type", content_type)], text)
            assert up.json() == {"b64": b64, "sha": hashlib.sha256(text).hexdigest()}, content_type


async def test_bare_return_values_follow_each_format(
    gw: Gateway, functions: dict[str, tuple[str, str]]
) -> None:
    expected = {
        # 2.0: a string is the body as it is, anything else its JSON; 1.0: the JSON, as it was.
        "2.0": {"/bare-string": b"hello bare", "/bare-object": b'{"k":[1,2]}'},
        "1.0": {"/bare-string": b'"hello bare"', "/bare-object": b'{"k":[1,2]}'},
    }
    for fmt, (ns, name) in functions.items():
        for origin in origins(gw, ns, name):
            await ready(gw, origin)
            for path, body in expected[fmt].items():
                res = send(gw, "GET", origin, path)
                assert (res.status, res.body) == (200, body), (fmt, origin, path)
                assert res.values("content-type") == ["application/json"]


async def test_the_host_form_and_the_path_form_reach_the_same_function(
    gw: Gateway, functions: dict[str, tuple[str, str]]
) -> None:
    ns, name = functions["2.0"]
    seen = []
    for origin in origins(gw, ns, name):
        await ready(gw, origin)
        event = send(
            gw, "POST", origin, "/a/b%2Fc?x", [("Content-Type", "text/plain")], b"hi"
        ).json()
        seen.append((event["rawPath"], event["body"], event["requestContext"]["functionName"]))
    assert seen == [("/a/b%2Fc", "hi", name)] * 2
