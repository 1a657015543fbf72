"""HTTP triggers' two payload formats (issue 24.3): 1.0 (API Gateway REST) and 2.0 (HTTP API /
function URL), requests and answers, binary both ways, paths relative to the mount point."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from nimbus.api.triggerserver import trigger_to_pb
from nimbus.common.errors import InvalidArgument
from nimbus.common.triggers import PayloadFormat, TriggerRecord, check_trigger
from nimbus.invoker.http.server import HttpRequest, HttpResponse
from nimbus.invoker.sync.invoke import InvokeResult
from nimbus.invoker.triggers.http import HttpTriggers
from nimbus.invoker.triggers.payloads import (
    Mount,
    build_event,
    http_api_event,
    http_api_response,
    rest_event,
    rest_response,
    shape_response,
)

NOW = 1700000000.5  # 14/Nov/2023:22:13:20 +0000
SHARED = Mount("team-a", "shop", "/fn/team-a/shop", "/users/9%2F1", own_origin=False)
OWN = Mount("team-a", "shop", "/shop", "/users/9%2F1", own_origin=True)


def request(
    method: str = "GET",
    target: str = "/fn/team-a/shop/users/9%2F1?a=1&a=2&b=x%20y&empty=",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> HttpRequest:
    return HttpRequest(
        method,
        target,
        "HTTP/1.1",
        headers
        if headers is not None
        else [
            ("host", "team-a.fn.localhost:8080"),
            ("user-agent", "curl/8"),
            ("accept", "text/html"),
            ("accept", "application/json"),
            ("cookie", "sid=1; theme=dark"),
            ("cookie", "lang=en"),
            ("x-nimbus-source-ip", "10.0.0.7"),
            ("x-envoy-expected-rq-timeout-ms", "5"),
        ],
        body,
    )


def v2(req: HttpRequest, mount: Mount = OWN) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(http_api_event(req, mount, "req-1", NOW))
    return event


def v1(req: HttpRequest, mount: Mount = OWN) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(rest_event(req, mount, "req-1", NOW))
    return event


def result(payload: object, error: str = "") -> InvokeResult:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InvokeResult("rq-1", raw, error, 10, 1, False, "$LATEST")


def header(res: HttpResponse, name: str) -> list[str]:
    return [v for k, v in res.headers if k.lower() == name]


# -- 2.0 events ---------------------------------------------------------------------------------


def test_a_2_0_event_is_a_function_url_event_relative_to_the_mount_point():
    event = v2(request())
    assert (event["version"], event["routeKey"]) == ("2.0", "$default")
    # rawPath as sent (percent-encoding kept), relative to the mount point; the query as sent.
    assert event["rawPath"] == "/users/9%2F1"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y&empty="
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y", "empty": ""}
    # Cookies apart, repeats joined by commas, the gateway's own headers gone.
    assert event["cookies"] == ["sid=1", "theme=dark", "lang=en"]
    assert event["headers"] == {
        "host": "team-a.fn.localhost:8080",
        "user-agent": "curl/8",
        "accept": "text/html,application/json",
    }
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/users/9%2F1",
        "protocol": "HTTP/1.1",
        "sourceIp": "10.0.0.7",
        "userAgent": "curl/8",
    }
    assert (context["requestId"], context["routeKey"], context["stage"]) == (
        "req-1",
        "$default",
        "$default",
    )
    assert (context["time"], context["timeEpoch"]) == ("14/Nov/2023:22:13:20 +0000", NOW * 1000)
    assert (context["mountPath"], context["domainName"]) == ("/shop", "team-a.fn.localhost:8080")
    assert (context["namespace"], context["functionName"]) == ("team-a", "shop")
    # No body: no body field, as Lambda sends a GET; 1.0-only fields are absent.
    assert "body" not in event and event["isBase64Encoded"] is False
    for field in ("httpMethod", "path", "multiValueHeaders", "resource"):
        assert field not in event


def test_a_2_0_event_at_the_mount_point_and_without_query_or_cookies():
    req = request(target="/shop", headers=[("host", "team-a.fn.localhost")])
    for rest in ("", "/"):
        event = v2(req, Mount("team-a", "shop", "/shop", rest, own_origin=True))
        assert event["rawPath"] == "/" and event["requestContext"]["http"]["path"] == "/"
        assert event["rawQueryString"] == ""
        assert "cookies" not in event and "queryStringParameters" not in event


def test_the_shared_origin_sends_no_cookies_in_either_format():
    # The browser's cookies for the gateway's origin (the console's) are never a function's.
    event = v2(request(), SHARED)
    assert "cookies" not in event and "cookie" not in event["headers"]
    assert event["requestContext"]["mountPath"] == "/fn/team-a/shop"
    rest = v1(request(), SHARED)
    assert "cookie" not in rest["headers"] and "cookie" not in rest["multiValueHeaders"]
    assert v1(request(), OWN)["multiValueHeaders"]["cookie"] == ["sid=1; theme=dark", "lang=en"]


@pytest.mark.parametrize(
    ("content_type", "body", "base64_encoded"),
    [
        ("", b"plain", False),
        ("text/plain; charset=utf-8", "héllo".encode(), False),
        ("application/json", b'{"a": 1}', False),
        ("application/vnd.api+json", b"{}", False),
        ("application/x-www-form-urlencoded", b"a=1", False),
        ("image/svg+xml", b"<svg/>", False),
        ("application/octet-stream", b"valid utf-8 but binary by type", True),
        ("image/png", b"\x89PNG\r\n\x1a\n", True),
        ("multipart/form-data; boundary=x", b"--x\r\n", True),
        ("text/plain", b"\xff\xfe not utf-8", True),
        ("", b"\x00\xff", True),
    ],
)
def test_2_0_request_bodies_are_base64_when_binary(content_type, body, base64_encoded):
    headers = [("content-type", content_type)] if content_type else []
    event = v2(request("POST", "/shop/up", headers, body))
    assert event["isBase64Encoded"] is base64_encoded
    sent = base64.b64decode(event["body"]) if base64_encoded else event["body"].encode()
    assert sent == body


def test_1_0_bodies_are_base64_only_when_not_utf_8():
    """1.0 keeps what its events always had: text unless the bytes are not UTF-8."""
    png = v1(request("POST", "/shop/up", [("content-type", "image/png")], b"\x89PNG\x00"))
    assert png["isBase64Encoded"] is True and base64.b64decode(png["body"]) == b"\x89PNG\x00"
    text = v1(request("POST", "/shop/up", [("content-type", "application/octet-stream")], b"ok"))
    assert (text["body"], text["isBase64Encoded"]) == ("ok", False)


def test_a_1_0_event_keeps_repeats_and_is_relative_to_the_mount_point():
    event = v1(request())
    assert (event["path"], event["resource"]) == ("/users/9/1", "/{proxy+}")
    assert event["pathParameters"] == {"proxy": "users/9/1"}
    assert event["multiValueHeaders"]["accept"] == ["text/html", "application/json"]
    assert event["headers"]["accept"] == "application/json"
    assert event["queryStringParameters"] == {"a": "2", "b": "x y", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {
        "a": ["1", "2"],
        "b": ["x y"],
        "empty": [""],
    }
    context = event["requestContext"]
    # requestContext.path: the whole path as requested, as API Gateway's has the stage in it.
    assert context["path"] == "/fn/team-a/shop/users/9/1" and context["mountPath"] == "/shop"
    assert (context["resourcePath"], context["stage"], context["protocol"]) == (
        "/{proxy+}",
        "$default",
        "HTTP/1.1",
    )
    assert context["identity"] == {"sourceIp": "10.0.0.7", "userAgent": "curl/8"}
    assert "version" not in event and "rawPath" not in event


def test_build_event_and_shape_response_follow_the_format():
    req = request()
    assert json.loads(build_event(req, OWN, PayloadFormat.HTTP_API, "r", NOW))["version"] == "2.0"
    assert "version" not in json.loads(build_event(req, OWN, PayloadFormat.REST, "r", NOW))
    bare = result("hello")
    assert shape_response(bare, PayloadFormat.HTTP_API).body == b"hello"
    assert shape_response(bare, PayloadFormat.REST).body == b'"hello"'


# -- 2.0 answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returned", "body"),
    [
        ("Hello (world)", b"Hello (world)"),  # a bare string is the body as it is
        ({"message": "hi"}, b'{"message": "hi"}'),  # an object without statusCode, as JSON
        ([1, 2], b"[1, 2]"),
        (42, b"42"),
        (None, b"null"),
    ],
)
def test_a_2_0_return_without_status_code_is_a_200_json_body(returned, body):
    res = http_api_response(result(returned))
    assert res.status == 200 and res.body == body
    assert header(res, "content-type") == ["application/json"]
    assert header(res, "x-nimbus-request-id") == ["rq-1"]


def test_a_2_0_response_with_cookies_headers_and_a_binary_body():
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    res = http_api_response(
        result(
            {
                "statusCode": 201,
                "headers": {"Content-Type": "image/png", "X-Count": 3, "Vary": "a,b"},
                "multiValueHeaders": {"x-ignored": ["1", "2"]},
                "cookies": ["sid=2; Path=/; HttpOnly", "theme=light"],
                "body": base64.b64encode(png).decode(),
                "isBase64Encoded": True,
            }
        )
    )
    assert res.status == 201 and res.body == png
    assert header(res, "content-type") == ["image/png"] and header(res, "x-count") == ["3"]
    assert header(res, "vary") == ["a,b"]
    assert header(res, "set-cookie") == ["sid=2; Path=/; HttpOnly", "theme=light"]
    # multiValueHeaders is 1.0's: HTTP APIs ignore it in 2.0 answers.
    assert header(res, "x-ignored") == []


def test_a_2_0_response_body_rules():
    assert http_api_response(result({"statusCode": 204})).body == b""
    text = http_api_response(result({"statusCode": 200, "body": "<p>hi</p>"}))
    assert text.body == b"<p>hi</p>" and header(text, "content-type") == ["application/json"]
    assert http_api_response(result({"statusCode": 200, "body": {"a": 1}})).body == b'{"a": 1}'
    for bad in ({"statusCode": 99}, {"statusCode": "x"}, {"statusCode": 200, "headers": [1]}):
        res = http_api_response(result(bad))
        assert res.status == 502 and b"malformed function response" in res.body
    failed = http_api_response(result({"errorMessage": "secret"}, error="Unhandled"))
    assert failed.status == 502 and b"secret" not in failed.body
    assert json.loads(failed.body) == {"message": "Internal server error"}
    forged = http_api_response(
        result({"statusCode": 200, "headers": {"x-nimbus-request-id": "forged"}})
    )
    assert header(forged, "x-nimbus-request-id") == ["rq-1"]


# -- 1.0 answers ---------------------------------------------------------------------------------


def test_a_1_0_response_keeps_multi_value_headers_and_binary():
    res = rest_response(
        result(
            {
                "statusCode": 200,
                "headers": {"Content-Type": "application/pdf"},
                "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"], "X-M": ["1", "2"]},
                "body": base64.b64encode(b"%PDF\xff").decode(),
                "isBase64Encoded": True,
            }
        )
    )
    assert res.body == b"%PDF\xff" and header(res, "x-m") == ["1", "2"]
    assert header(res, "set-cookie") == ["a=1", "b=2"]
    # A bare value goes out as the JSON it was, as 1.0 always did.
    bare = rest_response(result("hello"))
    assert bare.status == 200 and bare.body == b'"hello"'


# -- the trigger's format -----------------------------------------------------------------------


def test_a_trigger_s_payload_format():
    old = TriggerRecord.from_json(
        b'{"trigger_id": "http", "namespace": "n", "function": "f", "type": "http"}'
    )
    assert old.format == PayloadFormat.REST  # stored before the field: 1.0
    record = TriggerRecord("http", "n", "f", "http", payload_format="2.0")
    assert TriggerRecord.from_json(record.to_json()).format == PayloadFormat.HTTP_API
    check_trigger("http", "", "", "", "2.0")
    check_trigger("http", "", "", "", "1.0")
    check_trigger("http", "", "", "", "")
    with pytest.raises(InvalidArgument, match=r"^payload_format: '3\.0' is not"):
        check_trigger("http", "", "", "", "3.0")
    with pytest.raises(InvalidArgument, match="^payload_format: only an http trigger"):
        check_trigger("timer", "@every 1s", "", "", "2.0")
    # The API answers an http trigger's format, 1.0 for one stored before the field existed.
    assert trigger_to_pb(old).payload_format == "1.0"
    assert trigger_to_pb(record).payload_format == "2.0"
    assert (
        trigger_to_pb(TriggerRecord("t", "n", "f", "timer", schedule="@every 1s")).payload_format
        == ""
    )


class Runner:
    def __init__(self, returned: object) -> None:
        self.returned = returned
        self.events: list[dict[str, Any]] = []

    async def invoke(
        self, who: object, name: str, qualifier: str, payload: bytes, deadline_s: float
    ) -> InvokeResult:
        self.events.append(json.loads(payload))
        return result(self.returned)


class Clock:
    def now(self) -> float:
        return NOW


@pytest.mark.parametrize("fmt", ["", "1.0", "2.0"])
async def test_the_listener_speaks_the_trigger_s_format_on_both_origins(fmt):
    runner = Runner("bare")
    record = TriggerRecord("http", "team-a", "shop", "http", payload_format=fmt)
    triggers = HttpTriggers(lambda ns, n: record if n == "shop" else None, runner, Clock())  # type: ignore[arg-type]
    on_host = await triggers.handle_host(
        request(target="/shop/users/9?x=1", headers=[("host", "team-a.fn.localhost")])
    )
    shared = await triggers.handle(request(target="/fn/team-a/shop/users/9?x=1", headers=[]))
    for res in (on_host, shared):
        assert res.body == (b"bare" if fmt == "2.0" else b'"bare"')
    for event in runner.events:
        path = event["rawPath"] if fmt == "2.0" else event["path"]
        assert path == "/users/9"
    mounts = [e["requestContext"]["mountPath"] for e in runner.events]
    assert mounts == ["/shop", "/fn/team-a/shop"]
