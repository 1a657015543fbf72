"""The public HTTP trigger: request parsing, the API Gateway proxy event, the response mapping."""

from __future__ import annotations

import base64
import json

import pytest
from nimbus.common.errors import NotFound
from nimbus.invoker.http.server import HttpRequest, HttpResponse, format_response
from nimbus.invoker.sync.invoke import InvokeResult
from nimbus.invoker.triggers.http import proxy_event, proxy_response, split_path
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
    event = json.loads(proxy_event(req, "ns", "hello", "/a%20b", "req-1", 1700000000.5))
    assert event["httpMethod"] == "POST" and event["path"] == "/fn/ns/hello/a b"
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
    assert event["requestContext"]["identity"]["sourceIp"] == "10.0.0.1"
    assert event["requestContext"]["requestTimeEpoch"] == 1700000000500
    binary = json.loads(
        proxy_event(
            HttpRequest("PUT", "/fn/ns/hello", "HTTP/1.1", [], b"\xff\x00"),
            "ns",
            "hello",
            "",
            "r",
            0,
        )
    )
    assert binary["isBase64Encoded"] is True and base64.b64decode(binary["body"]) == b"\xff\x00"
    assert (
        binary["queryStringParameters"] is None
        and binary["pathParameters"] is None
        and binary["body"] != ""
    )
    empty = json.loads(
        proxy_event(
            HttpRequest("GET", "/fn/ns/hello", "HTTP/1.1", [], b""), "ns", "hello", "", "r", 0
        )
    )
    assert empty["body"] is None


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
