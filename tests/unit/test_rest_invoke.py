"""The invokers' REST invoke (restinvoke.py): the same contract the transcoded gRPC route had."""

from __future__ import annotations

import json

import pytest
from nimbus.common.auth import Principal
from nimbus.common.errors import InvalidArgument, NotFound, Throttled, Unauthenticated
from nimbus.invoker.http.rest import RestInvoke, parse_query, route
from nimbus.invoker.http.server import HttpRequest
from nimbus.invoker.sync.invoke import InvokeResult

WHO = Principal(namespace="team", key_id="k1", admin=False)


class Keys:
    async def authenticate(self, authorization: str | None) -> Principal:
        if authorization != "Bearer good":
            raise Unauthenticated("invalid API key")
        return WHO


class Runner:
    def __init__(self, result: InvokeResult | None = None, error: Exception | None = None) -> None:
        self.result, self.error, self.calls = result, error, []

    async def invoke(self, who, name, qualifier, payload, deadline_s, log_tail=False):
        self.calls.append((who, name, qualifier, payload, log_tail))
        if self.error is not None:
            raise self.error
        return self.result


class Submitter:
    def __init__(self) -> None:
        self.calls = []

    async def submit(self, who, name, qualifier, event, idempotency_key):
        self.calls.append((who, name, qualifier, event, idempotency_key))
        return "inv-1"


RESULT = InvokeResult(
    "req-1", b'{"ok":true}', "", 1500, 2, True, "3", init_duration_us=900, log_tail=b"tail"
)


def req(target: str, body: bytes = b"{}", method: str = "POST", **headers: str) -> HttpRequest:
    hs = [("authorization", "Bearer good"), *((k.replace("_", "-"), v) for k, v in headers.items())]
    return HttpRequest(method, target, "HTTP/1.1", hs, body)


def test_routes_only_post_invoke_and_invoke_async():
    assert route(req("/v1/functions/echo:invoke")) == ("echo", "invoke")
    assert route(req("/v1/functions/echo:invokeAsync")) == ("echo", "invokeAsync")
    for bad in (
        req("/v1/functions/echo:invoke", method="GET"),
        req("/v1/functions/a/b:invoke"),
        req("/v1/functions/echo"),
    ):
        with pytest.raises(NotFound):
            route(bad)


def test_query_takes_qualifier_and_log_only_where_they_apply():
    assert parse_query("qualifier=live&log=Tail", "invoke") == {"qualifier": "live", "log": "Tail"}
    assert parse_query("", "invokeAsync") == {}
    with pytest.raises(InvalidArgument, match="^bogus: unknown query parameter"):
        parse_query("bogus=1", "invoke")
    with pytest.raises(InvalidArgument, match="^log: unknown query parameter"):
        parse_query("log=tail", "invokeAsync")


async def test_a_sync_invoke_answers_the_result_with_the_headers():
    runner = Runner(RESULT)
    res = await RestInvoke(Keys(), runner, Submitter()).handle(
        req("/v1/functions/echo:invoke?qualifier=live&log=tail", b'{"a":1}')
    )
    assert res.status == 200 and res.body == b'{"ok":true}'
    headers = dict(res.headers)
    assert headers["content-type"] == "application/json"
    assert headers["x-nimbus-request-id"] == "req-1" and headers["x-nimbus-cold-start"] == "true"
    assert headers["x-nimbus-billed-ms"] == "2" and headers["x-nimbus-executed-version"] == "3"
    assert (
        headers["x-nimbus-init-duration-us"] == "900" and headers["x-nimbus-log-tail"] == "dGFpbA=="
    )
    assert "x-nimbus-function-error" not in headers
    assert len(headers["x-nimbus-trace-id"]) == 32
    assert runner.calls == [(WHO, "echo", "live", b'{"a":1}', True)]


async def test_errors_have_the_api_shape_and_status():
    rest = RestInvoke(
        Keys(),
        Runner(error=Throttled("Rate exceeded: function 'echo' is at its max_concurrency of 1", 3)),
        Submitter(),
    )
    res = await rest.handle(req("/v1/functions/echo:invoke"))
    assert res.status == 429 and ("retry-after", "3") in res.headers
    assert json.loads(res.body) == {
        "code": 8,
        "status": "RESOURCE_EXHAUSTED",
        "message": "Rate exceeded: function 'echo' is at its max_concurrency of 1",
        "details": [],
    }
    assert res.body.startswith(b'{"code":8,"status":"RESOURCE_EXHAUSTED","message":')
    res = await rest.handle(HttpRequest("POST", "/v1/functions/echo:invoke", "HTTP/1.1", [], b"{}"))
    assert res.status == 401 and json.loads(res.body)["code"] == 16
    res = await rest.handle(req("/v1/functions/echo:invoke?log=all"))
    assert res.status == 400 and json.loads(res.body)["message"].startswith("log: ")


async def test_an_async_invoke_answers_the_invocation_id():
    submitter = Submitter()
    rest = RestInvoke(Keys(), Runner(RESULT), submitter)
    res = await rest.handle(
        req(
            "/v1/functions/echo:invokeAsync?qualifier=2", b"[1]", x_nimbus_idempotency_key="order-7"
        )
    )
    assert res.status == 200 and json.loads(res.body) == {"invocation_id": "inv-1"}
    assert len(dict(res.headers)["x-nimbus-trace-id"]) == 32
    assert submitter.calls == [(WHO, "echo", "2", b"[1]", "order-7")]
