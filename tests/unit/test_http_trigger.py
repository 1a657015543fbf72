"""The public HTTP trigger: request parsing, the API Gateway proxy event, the response mapping."""

from __future__ import annotations

import base64
import json

import pytest
from nimbus.common.errors import NotFound
from nimbus.common.triggers import TriggerRecord
from nimbus.invoker.http.front import HttpFront
from nimbus.invoker.http.server import HttpRequest, HttpResponse, format_response
from nimbus.invoker.sync.invoke import InvokeResult
from nimbus.invoker.triggers.http import (
    SHARED_ORIGIN_CSP,
    HttpTriggers,
    for_origin,
    host_namespace,
    split_host_path,
    split_path,
)
from nimbus.invoker.triggers.payloads import Mount, rest_event, source_ip
from nimbus.invoker.triggers.payloads import rest_response as proxy_response
from nimbus.invoker.triggers.subject import subject_event


def result(payload: object, error: str = "") -> InvokeResult:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InvokeResult("rq-1", raw, error, 10, 1, False, "$LATEST")


def test_format_response_is_one_buffer_with_length():
    raw = format_response(
        HttpResponse(201, [("content-type", "text/plain"), ("transfer-encoding", "chunked")], b"hi")
    )
    assert raw.startswith(b"HTTP/1.1 201 Created\r\n")
    assert (
        b"content-length: 2\r\n" in raw
        and b"transfer-encoding" not in raw
        and raw.endswith(b"\r\n\r\nhi")
    )
    assert b"content-length" not in format_response(HttpResponse(204, [], b"ignored"))
    assert format_response(HttpResponse(200, [], b"body"), head_only=True).endswith(b"\r\n\r\n")
    assert format_response(
        HttpResponse(299, [("x-a", "1"), ("x-b", "bad\r\nx-c: 2")], b""), keep_alive=False
    ) == (b"HTTP/1.1 299 Unknown\r\nx-a: 1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")


def test_split_path():
    assert split_path("/fn/ns/hello") == ("ns", "hello", "")
    assert split_path("/fn/ns/hello/a/b") == ("ns", "hello", "/a/b")
    for bad in ("/fn/ns", "/fn/NS/hello", "/fn/ns/9bad", "/other/ns/x"):
        with pytest.raises(NotFound):
            split_path(bad)


def test_proxy_event_shape():
    req = HttpRequest(
        "POST",
        "/fn/ns/hello/a%20b?x=1&x=2&empty=",
        "HTTP/1.1",
        [
            ("content-type", "text/plain"),
            ("x-envoy-expected-rq-timeout-ms", "1"),
            ("x-nimbus-client-content-type", "t"),
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
            ("accept", "a"),
            ("accept", "b"),
        ],
        b"hello",
    )
    mount = Mount("ns", "hello", "/fn/ns/hello", "/a%20b", own_origin=False)
    event = json.loads(rest_event(req, mount, "req-1", 1700000000.5))
    # Relative to the mount point, which requestContext keeps with the whole path.
    assert event["httpMethod"] == "POST" and event["path"] == "/a b"
    assert event["resource"] == "/{proxy+}"
    context = event["requestContext"]
    assert (context["path"], context["mountPath"], context["stage"]) == (
        "/fn/ns/hello/a b",
        "/fn/ns/hello",
        "$default",
    )
    assert context["requestTime"] == "14/Nov/2023:22:13:20 +0000"
    assert event["headers"] == {
        "content-type": "text/plain",
        "x-forwarded-for": "10.0.0.1, 10.0.0.2",
        "accept": "b",
    }
    assert event["multiValueHeaders"]["accept"] == ["a", "b"]
    assert event["queryStringParameters"] == {"x": "2", "empty": ""}
    assert event["multiValueQueryStringParameters"]["x"] == ["1", "2"]
    assert event["pathParameters"] == {"proxy": "a b"}
    assert event["body"] == "hello" and event["isBase64Encoded"] is False
    # The last entry is the one Envoy appended (the peer); the first is whatever the client wrote.
    assert event["requestContext"]["identity"]["sourceIp"] == "10.0.0.2"
    assert event["requestContext"]["requestTimeEpoch"] == 1700000000500
    at_mount = Mount("ns", "hello", "/fn/ns/hello", "", own_origin=False)
    binary = json.loads(
        rest_event(
            HttpRequest("PUT", "/fn/ns/hello", "HTTP/1.1", [], b"\xff\x00"), at_mount, "r", 0
        )
    )
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\xff\x00"
    assert (
        binary["queryStringParameters"] is None
        and binary["pathParameters"] is None
        and binary["body"] != ""
    )
    empty = json.loads(
        rest_event(HttpRequest("GET", "/fn/ns/hello", "HTTP/1.1", [], b""), at_mount, "r", 0)
    )
    assert empty["body"] is None
    assert (empty["path"], empty["resource"], empty["pathParameters"]) == ("/", "/", None)


def test_proxy_response_shaped():
    res = proxy_response(
        result(
            {
                "statusCode": 201,
                "headers": {"X-A": "1", "X-N": 5},
                "multiValueHeaders": {"x-m": ["a", "b"]},
                "cookies": ["c=1"],
                "body": "created",
            }
        )
    )
    assert res.status == 201 and res.body == b"created"
    assert (
        ("X-A", "1") in res.headers and ("X-N", "5") in res.headers and ("x-m", "b") in res.headers
    )
    assert ("set-cookie", "c=1") in res.headers and (
        "content-type",
        "application/json",
    ) in res.headers
    assert ("x-nimbus-request-id", "rq-1") in res.headers


def test_proxy_response_base64_object_plain_and_errors():
    b64 = proxy_response(
        result(
            {
                "statusCode": 200,
                "body": base64.b64encode(b"\x89PNG").decode(),
                "isBase64Encoded": True,
                "headers": {"Content-Type": "image/png"},
            }
        )
    )
    assert b64.body == b"\x89PNG" and ("Content-Type", "image/png") in b64.headers
    assert ("content-type", "application/json") not in b64.headers
    assert proxy_response(result({"statusCode": 200, "body": {"a": 1}})).body == b'{"a": 1}'
    plain = proxy_response(result({"hello": "world"}))
    assert plain.status == 200 and json.loads(plain.body) == {"hello": "world"}
    assert proxy_response(result({"statusCode": 99})).status == 502
    assert proxy_response(result({"statusCode": "abc"})).status == 502
    failed = proxy_response(
        result({"errorType": "ValueError", "errorMessage": "secret"}, error="Unhandled")
    )
    assert failed.status == 502 and b"secret" not in failed.body
    assert ("x-nimbus-function-error", "Unhandled") in failed.headers


def test_subject_event():
    assert subject_event("a.b", b'{"k": 1}') == b'{"k": 1}'
    assert json.loads(subject_event("a.b", b"plain text")) == {
        "subject": "a.b",
        "body": "plain text",
        "isBase64Encoded": False,
    }
    wrapped = json.loads(subject_event("a.b", b"\xff"))
    assert wrapped["isBase64Encoded"] is True and base64.b64decode(wrapped["body"]) == b"\xff"
    assert json.loads(subject_event("a.b", b""))["body"] == ""


def test_source_ip_is_what_the_gateway_vouches_for():
    def req(*headers: tuple[str, str]) -> HttpRequest:
        return HttpRequest("GET", "/fn/ns/f", "HTTP/1.1", list(headers))

    spoofed = ("x-forwarded-for", "6.6.6.6")
    assert source_ip(req(spoofed, ("x-nimbus-source-ip", "10.1.1.1"))) == "10.1.1.1"
    assert source_ip(req(("x-forwarded-for", "6.6.6.6, 10.1.1.1"))) == "10.1.1.1"
    assert source_ip(req(spoofed, ("x-forwarded-for", "10.1.1.1"))) == "10.1.1.1"
    assert source_ip(req()) == ""
    event = json.loads(
        rest_event(
            req(spoofed, ("x-nimbus-source-ip", "10.1.1.1"), ("x-nimbus-credential", "k")),
            Mount("ns", "f", "/fn/ns/f", "", own_origin=False),
            "r",
            0,
        )
    )
    assert event["requestContext"]["identity"]["sourceIp"] == "10.1.1.1"
    assert "x-nimbus-source-ip" not in event["headers"]
    assert "x-nimbus-credential" not in event["headers"]


def test_namespace_hosts_and_their_paths():
    assert host_namespace("team-a.fn.localhost:8080") == "team-a"
    assert host_namespace("team-a.fn.example.com") == "team-a"
    for other in (None, "", "localhost:8080", "fn.localhost", "9a.fn.x", "a.b.fn.x", "A.fn.x"):
        assert host_namespace(other) is None, other
    assert split_host_path("/hello") == ("hello", "")
    assert split_host_path("/hello/users/9") == ("hello", "/users/9")
    for bad in ("/", "/9bad", "//x"):
        with pytest.raises(NotFound):
            split_host_path(bad)


def test_a_function_cannot_shadow_platform_headers():
    res = proxy_response(
        result(
            {
                "statusCode": 200,
                "headers": {"X-Nimbus-Request-Id": "forged", "x-nimbus-function-error": "x"},
                "multiValueHeaders": {"x-nimbus-billed-ms": ["0"]},
                "body": "ok",
            }
        )
    )
    nimbus = [(k, v) for k, v in res.headers if k.lower().startswith("x-nimbus-")]
    assert nimbus == [("x-nimbus-request-id", "rq-1")]


def cookies_response() -> HttpResponse:
    return proxy_response(
        result(
            {
                "statusCode": 200,
                "headers": {"Content-Type": "text/html", "Set-Cookie": "a=1; Domain=fn.localhost"},
                "cookies": ["b=2; Path=/; domain = .localhost ; HttpOnly", "c=3"],
                "body": "<script>document.cookie</script>",
            }
        )
    )


def test_the_shared_origin_is_sandboxed_and_cookie_free():
    res = for_origin(cookies_response(), own_origin=False)
    assert not [k for k, _ in res.headers if k.lower() == "set-cookie"]
    assert ("content-security-policy", SHARED_ORIGIN_CSP) in res.headers
    assert SHARED_ORIGIN_CSP.startswith("sandbox ") and "allow-same-origin" not in SHARED_ORIGIN_CSP
    assert ("Content-Type", "text/html") in res.headers  # the function's own, on an opaque origin


def test_a_namespace_origin_keeps_cookies_on_its_host():
    res = for_origin(cookies_response(), own_origin=True)
    assert [v for k, v in res.headers if k.lower() == "set-cookie"] == [
        "a=1",
        "b=2; Path=/; HttpOnly",
        "c=3",
    ]
    assert not [k for k, _ in res.headers if k.lower() == "content-security-policy"]


class FakeRunner:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, object]]] = []

    async def invoke(
        self, who: object, name: str, qualifier: str, payload: bytes, deadline_s: float
    ) -> InvokeResult:
        self.calls.append((getattr(who, "namespace", ""), name, json.loads(payload)))
        return result({"statusCode": 200, "body": "hi", "cookies": ["s=1; Domain=localhost"]})


class Clock0:
    def now(self) -> float:
        return 0.0


async def test_the_front_routes_a_namespace_host_whatever_its_path():
    runner = FakeRunner()
    known = {("team-a", "healthz"), ("team-a", "hello")}

    def lookup(ns: str, name: str) -> object:
        return TriggerRecord("t", ns, name, "http") if (ns, name) in known else None

    triggers = HttpTriggers(lookup, runner, Clock0())  # type: ignore[arg-type]

    async def rest(req: HttpRequest) -> HttpResponse:
        return HttpResponse(299)

    front = HttpFront(
        [("/v1/functions/", rest)], triggers.handle, (host_namespace, triggers.handle_host)
    )

    def req(host: str, path: str) -> HttpRequest:
        return HttpRequest("GET", path, "HTTP/1.1", [("host", host)])

    res = await front.handle(req("team-a.fn.localhost:8080", "/healthz"))
    assert res.status == 200 and res.body == b"hi" and ("set-cookie", "s=1") in res.headers
    res = await front.handle(req("team-a.fn.localhost", "/hello/users/9?x"))
    ns, name, event = runner.calls[-1]
    assert (ns, name, event["path"], event["pathParameters"]) == (
        "team-a",
        "hello",
        "/users/9",
        {"proxy": "users/9"},
    )
    assert event["resource"] == "/{proxy+}"
    assert event["requestContext"]["mountPath"] == "/hello"
    assert event["requestContext"]["path"] == "/hello/users/9"
    assert (await front.handle(req("team-a.fn.localhost", "/v1/functions/x:invoke"))).status == 404
    assert (await front.handle(req("team-b.fn.localhost", "/hello"))).status == 404
    # The gateway's own host: health, REST, and the path form (sandboxed, no cookies).
    assert (await front.handle(req("localhost:8080", "/healthz"))).body == b"ok\n"
    assert (await front.handle(req("localhost:8080", "/v1/functions/x:invoke"))).status == 299
    res = await front.handle(req("localhost:8080", "/fn/team-a/hello"))
    assert res.status == 200 and ("content-security-policy", SHARED_ORIGIN_CSP) in res.headers
    assert not [k for k, _ in res.headers if k == "set-cookie"]
    res = await front.handle(req("localhost:8080", "/fn/team-b/hello"))
    assert res.status == 404 and ("content-security-policy", SHARED_ORIGIN_CSP) in res.headers
