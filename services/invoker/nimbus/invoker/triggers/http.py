"""HTTP triggers: the public URL /fn/{namespace}/{name}[/more][?query], with no API key.

A function with an http trigger answers it synchronously. The raw request becomes an event in API
Gateway's REST proxy shape (httpMethod, path, headers, multiValueHeaders, queryStringParameters,
multiValueQueryStringParameters, pathParameters, requestContext, body, isBase64Encoded); a return
of {statusCode, headers, multiValueHeaders, cookies, body, isBase64Encoded} becomes the response,
and any other return value is sent as a 200 application/json body. A failing function answers
502 with {"message": "Internal server error"} (its stack trace is not shown to the public); a
function without an http trigger is a 404, as is an unknown one.

Why a listener of its own rather than a transcoded gRPC method: a transcoded response can only
carry the status codes gRPC maps to, Envoy's transcoder rejects query parameters the request
message does not declare, and the path after the function name is free-form.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from nimbus.common.auth import Principal
from nimbus.common.clock import Clock
from nimbus.common.errors import NimbusError, NotFound
from nimbus.common.triggers import HTTP_PATH_PREFIX, TriggerRecord
from nimbus.invoker.http.errors import nimbus_error_response
from nimbus.invoker.http.server import HttpRequest, HttpResponse
from nimbus.invoker.sync.invoke import InvokeResult

_NAMESPACE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_JSON = "application/json"
# Added by the gateway for its own use; not part of the client's request.
_GATEWAY_HEADERS = ("x-envoy-", "x-nimbus-client-content-type")
_DEADLINE_S = 900.0


class Runner(Protocol):
    async def invoke(
        self, who: Principal, name: str, qualifier: str, payload: bytes, deadline_s: float
    ) -> InvokeResult: ...


def split_path(path: str) -> tuple[str, str, str]:
    """/fn/{namespace}/{name}{rest} → (namespace, name, rest); raises NotFound."""
    if not path.startswith(HTTP_PATH_PREFIX):
        raise NotFound(f"no route for {path!r}")
    parts = path[len(HTTP_PATH_PREFIX) :].split("/", 2)
    if len(parts) < 2:
        raise NotFound("the URL must be /fn/{namespace}/{function}")
    namespace, name = unquote(parts[0]), unquote(parts[1])
    if not _NAMESPACE.fullmatch(namespace) or not _NAME.fullmatch(name):
        raise NotFound(f"no function at {path!r}")
    rest = "/" + parts[2] if len(parts) == 3 else ""
    return namespace, name, rest


def _body_field(body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


def proxy_event(
    req: HttpRequest, namespace: str, name: str, rest: str, request_id: str, now: float
) -> bytes:
    """The request in API Gateway's REST proxy event shape (pure)."""
    multi_headers: dict[str, list[str]] = defaultdict(list)
    for key, value in req.headers:
        if key.startswith(_GATEWAY_HEADERS):
            continue
        multi_headers[key].append(value)
    headers = {k: v[-1] for k, v in multi_headers.items()}
    multi_query: dict[str, list[str]] = defaultdict(list)
    for key, value in parse_qsl(req.query, keep_blank_values=True):
        multi_query[key].append(value)
    body, is_b64 = _body_field(req.body)
    path = unquote(req.path)
    forwarded = headers.get("x-forwarded-for", "")
    event: dict[str, Any] = {
        "resource": f"{HTTP_PATH_PREFIX}{{namespace}}/{{name}}" + ("/{proxy+}" if rest else ""),
        "path": path,
        "httpMethod": req.method,
        "headers": headers,
        "multiValueHeaders": dict(multi_headers),
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": dict(multi_query) or None,
        "pathParameters": {"proxy": unquote(rest[1:])} if rest else None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "path": path,
            "httpMethod": req.method,
            "stage": "$default",
            "namespace": namespace,
            "functionName": name,
            "requestTimeEpoch": int(now * 1000),
            "identity": {
                "sourceIp": forwarded.split(",")[0].strip(),
                "userAgent": headers.get("user-agent", ""),
            },
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }
    return json.dumps(event).encode()


def proxy_response(result: InvokeResult) -> HttpResponse:
    """The function's return value as the HTTP response (pure)."""
    meta = [("x-nimbus-request-id", result.request_id)]
    if result.function_error:
        body = json.dumps({"message": "Internal server error"}).encode()
        return HttpResponse(
            502,
            [("content-type", _JSON), *meta, ("x-nimbus-function-error", result.function_error)],
            body,
        )
    try:
        value = json.loads(result.payload) if result.payload else None
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or "statusCode" not in value:
        return HttpResponse(200, [("content-type", _JSON), *meta], result.payload)
    try:
        return _shaped(value, meta)
    except (TypeError, ValueError) as err:
        body = json.dumps(
            {"message": f"Internal server error: malformed function response ({err})"}
        ).encode()
        return HttpResponse(502, [("content-type", _JSON), *meta], body)


def _shaped(value: dict[str, Any], meta: list[tuple[str, str]]) -> HttpResponse:
    status = int(value["statusCode"])
    if not 200 <= status <= 599:
        raise ValueError(f"statusCode {status} is not between 200 and 599")
    headers: list[tuple[str, str]] = []
    for key, item in (value.get("headers") or {}).items():
        headers.append((str(key), _header_text(item)))
    for key, items in (value.get("multiValueHeaders") or {}).items():
        for item in items if isinstance(items, list) else [items]:
            headers.append((str(key), _header_text(item)))
    for cookie in value.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", _JSON))
    raw = value.get("body")
    if raw is None:
        body = b""
    elif isinstance(raw, str):
        body = base64.b64decode(raw) if value.get("isBase64Encoded") else raw.encode()
    else:
        body = json.dumps(raw).encode()
    return HttpResponse(status, [*headers, *meta], body)


def _header_text(item: object) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)


class HttpTriggers:
    """The listener's handler: route, look up the trigger, run the function, shape the answer."""

    def __init__(
        self, lookup: Callable[[str, str], TriggerRecord | None], runner: Runner, clock: Clock
    ) -> None:
        self._lookup = lookup
        self._runner = runner
        self._clock = clock

    async def handle(self, req: HttpRequest) -> HttpResponse:
        try:
            namespace, name, rest = split_path(req.path)
            trigger = self._lookup(namespace, name)
            if trigger is None:
                raise NotFound(f"no function at {req.path!r}")
            event = proxy_event(req, namespace, name, rest, str(uuid.uuid4()), self._clock.now())
            who = Principal(namespace=namespace, key_id="http-trigger", admin=False)
            result = await self._runner.invoke(who, name, trigger.qualifier, event, _DEADLINE_S)
        except NimbusError as err:
            return nimbus_error_response(err)
        return proxy_response(result)
