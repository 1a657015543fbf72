"""REST invokes on the invoker's own HTTP/1.1 listener: POST /v1/functions/{name}:invoke and
POST /v1/functions/{name}:invokeAsync.

The same contract as the transcoded gRPC route it replaces at the gateway (DESIGN.md: the body is
the event, the response body is the result, the x-nimbus-* headers, errors as {"code", "message",
"details"} with the matching HTTP status, `qualifier` (and `log` for :invoke) as the only query
parameters, x-nimbus-idempotency-key for :invokeAsync, which answers {"invocation_id"}), but
Envoy forwards the request as it came instead of transcoding it into a gRPC call: no JSON↔gRPC
translation and no grpc.aio server in the way, which was about a quarter of a warm call's time.
"""

from __future__ import annotations

import json
import re
import time
from typing import Protocol
from urllib.parse import parse_qsl, unquote

from nimbus.common import metrics, tracing
from nimbus.common.auth import Principal
from nimbus.common.errors import InvalidArgument, NimbusError, NotFound, Throttled
from nimbus.invoker.http.errors import nimbus_error_response
from nimbus.invoker.http.server import HttpRequest, HttpResponse
from nimbus.invoker.sync.invoke import InvokeResult
from nimbus.invoker.sync.replyheaders import (
    DEFAULT_DEADLINE_S,
    IDEMPOTENCY_HEADER,
    reply_headers,
    wants_log_tail,
)

PATH_PREFIX = "/v1/functions/"
_INVOKE_PATH = re.compile(r"/v1/functions/([^/]+):(invoke|invokeAsync)")
_QUERY_FIELDS = {"invoke": ("qualifier", "log"), "invokeAsync": ("qualifier",)}
_JSON = "application/json"
_METHODS = {
    "invoke": "nimbus.api.v1.Invocations/Invoke",
    "invokeAsync": "nimbus.api.v1.Invocations/InvokeAsync",
}


class Authenticator(Protocol):
    async def authenticate(self, authorization: str | None) -> Principal: ...


class Runner(Protocol):
    async def invoke(
        self,
        who: Principal,
        name: str,
        qualifier: str,
        payload: bytes,
        deadline_s: float,
        log_tail: bool = False,
    ) -> InvokeResult: ...


class Submitter(Protocol):
    async def submit(
        self, who: Principal, name: str, qualifier: str, event: bytes, idempotency_key: str
    ) -> str: ...


def parse_query(query: str, method: str) -> dict[str, str]:
    """The call's query parameters; any other one is a 400, as the transcoder answered."""
    allowed = _QUERY_FIELDS[method]
    fields: dict[str, str] = {}
    if not query:
        return fields
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in allowed:
            raise InvalidArgument(
                f"{key}: unknown query parameter; :{method} takes {' and '.join(allowed)}"
            )
        fields[key] = value
    return fields


def route(req: HttpRequest) -> tuple[str, str]:
    """(function name, "invoke" | "invokeAsync"); NotFound for anything else."""
    match = _INVOKE_PATH.fullmatch(req.path)
    if match is None or req.method != "POST":
        raise NotFound(f"no route for {req.method} {req.path}")
    return unquote(match.group(1)), match.group(2)


def error_reply(err: NimbusError) -> HttpResponse:
    res = nimbus_error_response(err)
    if isinstance(err, Throttled):
        res.headers.append(("retry-after", str(err.retry_after_s)))
    return res


class RestInvoke:
    def __init__(self, auth: Authenticator, runner: Runner, submitter: Submitter) -> None:
        self._auth = auth
        self._runner = runner
        self._submitter = submitter
        # Traced and counted as the gRPC methods they stand for, so either way in reads the same.
        self._series = {m: metrics.MethodSeries(name) for m, name in _METHODS.items()}

    async def handle(self, req: HttpRequest) -> HttpResponse:
        try:
            name, method = route(req)
        except NimbusError as err:
            return error_reply(err)
        token, span = tracing.start(_METHODS[method], req.header(tracing.TRACEPARENT))
        t0 = time.perf_counter()
        code = "OK"
        try:
            return await self._call(req, name, method)
        except NimbusError as err:
            code = err.code.name
            return error_reply(err)
        finally:
            self._series[method].observe(code, time.perf_counter() - t0)
            tracing.finish(token, span, None if code == "OK" else code)

    async def _call(self, req: HttpRequest, name: str, method: str) -> HttpResponse:
        if req.query:
            query = parse_query(req.query, method)
            log_tail = wants_log_tail(query.get("log", ""))
            qualifier = query.get("qualifier", "")
        else:
            log_tail, qualifier = False, ""
        who = await self._auth.authenticate(req.header("authorization"))
        if method == "invokeAsync":
            key = req.header(IDEMPOTENCY_HEADER) or ""
            invocation_id = await self._submitter.submit(who, name, qualifier, req.body, key)
            headers = [
                ("content-type", _JSON),
                (tracing.TRACE_ID_HEADER, tracing.current_trace_id()),
            ]
            return HttpResponse(200, headers, json.dumps({"invocation_id": invocation_id}).encode())
        result = await self._runner.invoke(
            who, name, qualifier, req.body, DEFAULT_DEADLINE_S, log_tail
        )
        return HttpResponse(
            200, [("content-type", _JSON), *reply_headers(result, log_tail)], result.payload
        )
