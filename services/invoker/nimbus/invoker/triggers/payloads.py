"""The two payload formats of an HTTP trigger (issue 24.3), as pure functions: the request as the
function's event, and the function's return value as the HTTP response.

1.0, API Gateway's REST proxy integration (what every trigger made before the choice existed
uses): httpMethod, path, resource, headers and multiValueHeaders, queryStringParameters and
multiValueQueryStringParameters, pathParameters.proxy, requestContext (identity.sourceIp), body,
isBase64Encoded. A body that is not UTF-8 arrives base64-encoded. The answer is {statusCode,
headers, multiValueHeaders, cookies, body, isBase64Encoded}; any other return value is sent as a
200 application/json body, as it was.

2.0, API Gateway's HTTP API and Lambda function URLs: version, routeKey, rawPath, rawQueryString,
cookies (the Cookie header's, which headers then lacks), headers (repeats joined by commas),
queryStringParameters (repeats joined by commas), requestContext.http (method, path, protocol,
sourceIp, userAgent), body, isBase64Encoded. A body whose Content-Type is not text (text/*, JSON,
XML, JavaScript, form-urlencoded) or that is not UTF-8 arrives base64-encoded. The answer is
{statusCode, headers, cookies, body, isBase64Encoded} (multiValueHeaders is not part of 2.0 and is
ignored, as HTTP APIs do); any other return value is the body of a 200 application/json answer: a
string as it is, anything else as its JSON.

Paths are relative to the trigger's mount point (DESIGN.md), as a function URL's rawPath is:
/fn/{namespace}/{name}/users/9 and {namespace}.fn.{domain}/{name}/users/9 both reach the function
as /users/9 (and the mount point itself as /), so web frameworks route unchanged. Where it was
mounted is in requestContext: mountPath (/fn/{namespace}/{name} on the shared origin, /{name} on
the namespace's own), domainName (the Host), namespace and functionName; 1.0's requestContext.path
is the whole path as requested, as API Gateway's is (stage and base path included). stage and
routeKey stay "$default": frameworks (Powertools) strip a stage other than that from the path.
"""

from __future__ import annotations

import base64
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from nimbus.common.triggers import PayloadFormat
from nimbus.invoker.http.server import HttpRequest, HttpResponse
from nimbus.invoker.sync.invoke import InvokeResult

# Set by the gateway on trigger routes from the connection's address (what use_remote_address and
# xff_num_trusted_hops make of it); a client's own is overwritten.
SOURCE_IP_HEADER = "x-nimbus-source-ip"
# Added by the gateway for its own use; not part of the client's request.
_GATEWAY_HEADERS = (
    "x-envoy-",
    "x-nimbus-client-content-type",
    "x-nimbus-credential",
    SOURCE_IP_HEADER,
)
# The platform's own response headers: a function's are dropped, never merged.
_PLATFORM_HEADERS = "x-nimbus-"
_JSON = "application/json"
# 2.0: request bodies of these types arrive as text (when they are UTF-8), all others in base64.
_TEXT_TYPES = (
    "application/json",
    "application/javascript",
    "application/xml",
    "application/x-www-form-urlencoded",
    "application/graphql",
    "application/x-ndjson",
)
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_INTERNAL_ERROR = json.dumps({"message": "Internal server error"}).encode()


@dataclass(frozen=True, slots=True)
class Mount:
    """Where a request reached a function's trigger."""

    namespace: str
    name: str
    # The trigger's mount point on the origin the request came to: /fn/{namespace}/{name} on the
    # shared origin, /{name} on the namespace's own.
    path: str
    # The path below the mount point as the client sent it (percent-encoding kept), "" for none.
    rest: str
    # The namespace's own origin ({namespace}.fn.{domain}); on the shared one the browser's
    # cookies are the gateway origin's, never the function's, and do not reach it.
    own_origin: bool


def source_ip(req: HttpRequest) -> str:
    """The client's address as the gateway saw it: never an X-Forwarded-For entry the client
    wrote (those come first; Envoy appends the peer's address last)."""
    vouched = req.header(SOURCE_IP_HEADER)
    if vouched:
        return vouched
    forwarded = [v for k, v in req.headers if k == "x-forwarded-for"]
    return forwarded[-1].rsplit(",", 1)[-1].strip() if forwarded else ""


def build_event(
    req: HttpRequest, mount: Mount, fmt: PayloadFormat, request_id: str, now: float
) -> bytes:
    """The request as the function's event in the trigger's payload format."""
    if fmt == PayloadFormat.HTTP_API:
        return http_api_event(req, mount, request_id, now)
    return rest_event(req, mount, request_id, now)


def shape_response(result: InvokeResult, fmt: PayloadFormat) -> HttpResponse:
    """The function's return value as the HTTP response, by the trigger's payload format."""
    if fmt == PayloadFormat.HTTP_API:
        return http_api_response(result)
    return rest_response(result)


# -- requests -----------------------------------------------------------------------------------


def _client_headers(req: HttpRequest, mount: Mount) -> dict[str, list[str]]:
    """The client's headers (lower-case names, repeats kept in order), without the gateway's."""
    headers: dict[str, list[str]] = defaultdict(list)
    for key, value in req.headers:
        if key.startswith(_GATEWAY_HEADERS) or (key == "cookie" and not mount.own_origin):
            continue
        headers[key].append(value)
    return dict(headers)


def _query(req: HttpRequest) -> dict[str, list[str]]:
    query: dict[str, list[str]] = defaultdict(list)
    for key, value in parse_qsl(req.query, keep_blank_values=True):
        query[key].append(value)
    return dict(query)


def _text_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    if not media or media.startswith("text/") or media in _TEXT_TYPES:
        return True
    return media.endswith(("+json", "+xml"))


def _body_field(body: bytes, as_text: bool) -> tuple[str | None, bool]:
    if not body:
        return None, False
    if as_text:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), True


def _clf_time(now: float) -> str:
    """Common log format time, as API Gateway's requestContext.requestTime / time."""
    t = time.gmtime(now)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _mount_context(req: HttpRequest, mount: Mount) -> dict[str, Any]:
    return {
        "mountPath": mount.path,
        "domainName": req.header("host") or "",
        "namespace": mount.namespace,
        "functionName": mount.name,
    }


def rest_event(req: HttpRequest, mount: Mount, request_id: str, now: float) -> bytes:
    """1.0: API Gateway's REST proxy event; path and resource relative to the mount point."""
    multi_headers = _client_headers(req, mount)
    headers = {k: v[-1] for k, v in multi_headers.items()}
    multi_query = _query(req)
    body, is_b64 = _body_field(req.body, as_text=True)
    below = mount.rest not in ("", "/")
    resource = "/{proxy+}" if below else "/"
    event: dict[str, Any] = {
        "resource": resource,
        "path": unquote(mount.rest) if below else "/",
        "httpMethod": req.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": {k: v[-1] for k, v in multi_query.items()} or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": unquote(mount.rest[1:])} if below else None,
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "resourcePath": resource,
            "path": unquote(req.path),
            "httpMethod": req.method,
            "protocol": req.version,
            "stage": "$default",
            "requestTime": _clf_time(now),
            "requestTimeEpoch": int(now * 1000),
            "identity": {
                "sourceIp": source_ip(req),
                "userAgent": headers.get("user-agent", ""),
            },
            **_mount_context(req, mount),
        },
        "body": body,
        "isBase64Encoded": is_b64,
    }
    return json.dumps(event).encode()


def http_api_event(req: HttpRequest, mount: Mount, request_id: str, now: float) -> bytes:
    """2.0: the HTTP API / function URL event; rawPath relative to the mount point."""
    multi_headers = _client_headers(req, mount)
    cookies = [
        c.strip()
        for value in multi_headers.pop("cookie", [])
        for c in value.split(";")
        if c.strip()
    ]
    headers = {k: ",".join(v) for k, v in multi_headers.items()}
    query = {k: ",".join(v) for k, v in _query(req).items()}
    raw_path = mount.rest or "/"
    body, is_b64 = _body_field(req.body, as_text=_text_type(headers.get("content-type", "")))
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": req.query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "requestId": request_id,
        "routeKey": "$default",
        "stage": "$default",
        "time": _clf_time(now),
        "timeEpoch": int(now * 1000),
        "http": {
            "method": req.method,
            "path": raw_path,
            "protocol": req.version,
            "sourceIp": source_ip(req),
            "userAgent": headers.get("user-agent", ""),
        },
        **_mount_context(req, mount),
    }
    if body is not None:
        event["body"] = body
    event["isBase64Encoded"] = is_b64
    return json.dumps(event).encode()


# -- responses ----------------------------------------------------------------------------------


def _failed(result: InvokeResult) -> HttpResponse | None:
    """A failing function answers 502, its error kept from the public."""
    if not result.function_error:
        return None
    meta = [("x-nimbus-request-id", result.request_id)]
    return HttpResponse(
        502,
        [("content-type", _JSON), *meta, ("x-nimbus-function-error", result.function_error)],
        _INTERNAL_ERROR,
    )


def _value(result: InvokeResult) -> tuple[Any, bool]:
    """The function's return value, and whether it was JSON at all."""
    if not result.payload:
        return None, False
    try:
        return json.loads(result.payload), True
    except (ValueError, RecursionError):
        return None, False


def rest_response(result: InvokeResult) -> HttpResponse:
    """1.0: {statusCode, headers, multiValueHeaders, cookies, body, isBase64Encoded}; anything
    else goes out as it came, a 200 application/json body."""
    failed = _failed(result)
    if failed is not None:
        return failed
    value, _ = _value(result)
    if isinstance(value, dict) and "statusCode" in value:
        return _shaped(value, result.request_id, multi_value=True)
    meta = [("x-nimbus-request-id", result.request_id)]
    return HttpResponse(200, [("content-type", _JSON), *meta], result.payload)


def http_api_response(result: InvokeResult) -> HttpResponse:
    """2.0: {statusCode, headers, cookies, body, isBase64Encoded}; a return value without a
    statusCode is the body of a 200 application/json answer (a string as it is)."""
    failed = _failed(result)
    if failed is not None:
        return failed
    value, parsed = _value(result)
    if isinstance(value, dict) and "statusCode" in value:
        return _shaped(value, result.request_id, multi_value=False)
    meta = [("x-nimbus-request-id", result.request_id)]
    body = value.encode() if parsed and isinstance(value, str) else result.payload
    return HttpResponse(200, [("content-type", _JSON), *meta], body)


def _shaped(value: dict[str, Any], request_id: str, *, multi_value: bool) -> HttpResponse:
    try:
        return _shaped_or_raise(value, request_id, multi_value)
    except (TypeError, ValueError, AttributeError) as err:
        body = json.dumps(
            {"message": f"Internal server error: malformed function response ({err})"}
        ).encode()
        return HttpResponse(
            502, [("content-type", _JSON), ("x-nimbus-request-id", request_id)], body
        )


def _shaped_or_raise(value: dict[str, Any], request_id: str, multi_value: bool) -> HttpResponse:
    status = int(value["statusCode"])
    if not 200 <= status <= 599:
        raise ValueError(f"statusCode {status} is not between 200 and 599")
    headers: list[tuple[str, str]] = []
    for key, item in (value.get("headers") or {}).items():
        headers.append((str(key), _header_text(item)))
    if multi_value:
        for key, items in (value.get("multiValueHeaders") or {}).items():
            for item in items if isinstance(items, list) else [items]:
                headers.append((str(key), _header_text(item)))
    for cookie in value.get("cookies") or []:
        headers.append(("set-cookie", str(cookie)))
    # The platform's headers are the platform's: a function's x-nimbus-* never reach the client.
    headers = [(k, v) for k, v in headers if not k.lower().startswith(_PLATFORM_HEADERS)]
    if not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("content-type", _JSON))
    raw = value.get("body")
    if raw is None:
        body = b""
    elif isinstance(raw, str):
        body = base64.b64decode(raw) if value.get("isBase64Encoded") else raw.encode()
    else:
        body = json.dumps(raw).encode()
    return HttpResponse(status, [*headers, ("x-nimbus-request-id", request_id)], body)


def _header_text(item: object) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)
