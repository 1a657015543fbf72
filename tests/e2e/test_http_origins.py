"""Issue 15.6 against the real cluster: HTTP triggers on a namespace's own origin
({namespace}.fn.{domain}), the shared origin's path form sandboxed and cookie-free, a function that
cannot shadow x-nimbus-* headers, and a sourceIp taken from the connection, not from the client's
X-Forwarded-For."""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from support import Gateway

pytestmark = pytest.mark.timeout(300)

# A page that sets cookies (one aimed at the parent domain, where every namespace would see it),
# claims the platform's headers, and shows what the event said.
PAGE = {
    "main.py": (
        "import json\n"
        "def handler(event, context):\n"
        "    return {'statusCode': 200,\n"
        "            'headers': {'Content-Type': 'text/html', 'X-Nimbus-Request-Id': 'forged',\n"
        "                        'Set-Cookie': 'sid=1; Domain=localhost; Path=/'},\n"
        "            'multiValueHeaders': {'x-nimbus-function-error': ['none']},\n"
        "            'cookies': ['pref=dark; domain=fn.localhost; HttpOnly'],\n"
        "            'body': json.dumps({'path': event['path'],\n"
        "                                'proxy': event['pathParameters'],\n"
        "                                'ip': event['requestContext']['identity']['sourceIp'],\n"
        "                                'ns': event['requestContext']['namespace']})}\n"
    )
}
SPOOF = {
    "X-Forwarded-For": "6.6.6.6",
    "X-Envoy-External-Address": "6.6.6.6",
    "X-Nimbus-Source-Ip": "6.6.6.6",
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def get(
    gw: Gateway, path: str, headers: dict[str, str]
) -> tuple[int, list[tuple[str, str]], bytes]:
    """A GET as a browser or curl sends it, with the headers given (Host included)."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        res = conn.getresponse()
        return res.status, [(k.lower(), v) for k, v in res.getheaders()], res.read()
    finally:
        conn.close()


def values(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k == name]


async def eventually(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out; last saw {last!r}")


@pytest.fixture(scope="module")
def page(gw: Gateway) -> tuple[str, str]:
    name = unique("page")
    assert gw.create(name, PAGE).status == 200
    ns = gw.request("GET", f"/v1/functions/{name}").json()["namespace"]
    assert gw.request("POST", f"/v1/functions/{name}/triggers", {"type": "http"}).status == 200
    return ns, name


async def test_the_shared_origin_is_sandboxed_cookie_free_and_keeps_the_platforms_headers(
    gw: Gateway, page: tuple[str, str]
):
    ns, name = page
    host = f"127.0.0.1:{gw.port}"
    status, headers, body = await eventually(
        lambda: (r := get(gw, f"/fn/{ns}/{name}/a", {"Host": host, **SPOOF}))[0] == 200 and r
    )
    assert values(headers, "set-cookie") == []
    csp = values(headers, "content-security-policy")
    assert len(csp) == 1 and csp[0].split()[0] == "sandbox" and "allow-same-origin" not in csp[0]
    assert values(headers, "content-type") == ["text/html"]
    request_ids = values(headers, "x-nimbus-request-id")
    assert len(request_ids) == 1 and request_ids[0] != "forged"
    assert values(headers, "x-nimbus-function-error") == []
    seen = json.loads(body)
    # The path below the trigger's mount point, as a function URL's (issue 24.3).
    assert seen["ip"] == "127.0.0.1" and seen["path"] == "/a"


async def test_a_namespace_has_an_origin_of_its_own(gw: Gateway, page: tuple[str, str]):
    ns, name = page
    host = f"{ns}.fn.localhost:{gw.port}"
    status, headers, body = await eventually(
        lambda: (r := get(gw, f"/{name}/users/9?x=1", {"Host": host, **SPOOF}))[0] == 200 and r
    )
    seen = json.loads(body)
    assert seen == {"path": "/users/9", "proxy": {"proxy": "users/9"}, "ip": "127.0.0.1",
                    "ns": ns}  # fmt: skip
    # The function's cookies, kept on this host only; no sandbox needed on its own origin.
    assert values(headers, "set-cookie") == ["sid=1; Path=/", "pref=dark; HttpOnly"]
    assert values(headers, "content-security-policy") == []
    request_ids = values(headers, "x-nimbus-request-id")
    assert len(request_ids) == 1 and request_ids[0] != "forged"
    # Another namespace's host does not reach it, nor does an API path or a path with no function.
    other = f"{unique('other')}.fn.localhost:{gw.port}"
    assert get(gw, f"/{name}", {"Host": other})[0] == 404
    assert get(gw, f"/{unique('ghost')}", {"Host": host})[0] == 404
    status, _, body = get(gw, "/v1/functions", {"Host": host, "Authorization": "Bearer x"})
    assert status == 404 and b'"functions":' not in body  # not the API's list


async def test_source_ip_is_the_connections_address_not_the_clients_claim(
    gw: Gateway, page: tuple[str, str]
):
    ns, name = page
    for path, host in (
        (f"/fn/{ns}/{name}", f"127.0.0.1:{gw.port}"),
        (f"/{name}", f"{ns}.fn.localhost:{gw.port}"),
    ):
        for spoof in ("6.6.6.6", "6.6.6.6, 7.7.7.7", "127.0.0.2"):
            status, _, body = await eventually(
                lambda p=path, h=host, s=spoof: (
                    (r := get(gw, p, {"Host": h, "X-Forwarded-For": s, "X-Nimbus-Source-Ip": s}))[0]
                    == 200
                    and r
                )
            )
            assert json.loads(body)["ip"] == "127.0.0.1", (path, spoof)
