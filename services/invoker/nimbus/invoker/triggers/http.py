"""HTTP triggers: the public URLs of a function, with no API key.

Two forms reach the same function:
  http://{namespace}.fn.{domain}/{name}[/more][?query]  its namespace's own origin (preferred)
  http://{gateway}/fn/{namespace}/{name}[/more][?query]  the shared origin (kept for compatibility)

Why both, and what each allows (issue 15.6). A browser isolates pages by origin, and functions
choose their responses' Set-Cookie and Content-Type, so on one shared origin a tenant's page could
read another tenant's trigger responses, plant cookies for them, and reach the console and the API
that the gateway's origin also serves. So, as Lambda function URLs and workers.dev do, each
namespace has an origin of its own, where its functions answer as they like, except that a
Set-Cookie's Domain attribute is dropped: the cookie stays on the namespace's host (a self-hosted
`fn.{domain}` is not on the Public Suffix List, so a browser would otherwise take a cookie for the
parent domain from it and send it to every other namespace). On the shared origin, which cannot be
split, cookies are dropped and every answer carries `Content-Security-Policy: sandbox ...`
(without allow-same-origin): a page's scripts run in an opaque origin that reads nothing of the
gateway's origin, its cookies, storage, or the other functions' answers. On both, a function
cannot set or shadow the platform's `x-nimbus-*` headers.

The raw request becomes an event in API Gateway's REST proxy shape (httpMethod, path, headers,
multiValueHeaders, queryStringParameters, multiValueQueryStringParameters, pathParameters,
requestContext, body, isBase64Encoded); requestContext.identity.sourceIp is the address the
gateway vouches for (x-nimbus-source-ip, which Envoy sets from the connection, or else the last
X-Forwarded-For entry, the one Envoy appended), never what the client put in X-Forwarded-For. A
return of {statusCode, headers, multiValueHeaders, cookies, body, isBase64Encoded} becomes the
response, and any other return value is sent as a 200 application/json body. A failing function
answers 502 with {"message": "Internal server error"} (its stack trace is not shown to the
public); a function without an http trigger is a 404, as is an unknown one.

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

# Set by the gateway on trigger routes from the connection's address (what use_remote_address and
# xff_num_trusted_hops make of it); a client's own is overwritten.
SOURCE_IP_HEADER = "x-nimbus-source-ip"

_NAMESPACE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# A namespace's own origin: {namespace}.fn.{domain}[:port].
_FUNCTION_HOST = re.compile(r"([a-z][a-z0-9-]{0,62})\.fn\.[^/]+")
_JSON = "application/json"
# Added by the gateway for its own use; not part of the client's request.
_GATEWAY_HEADERS = (
    "x-envoy-",
    "x-nimbus-client-content-type",
    "x-nimbus-credential",
    SOURCE_IP_HEADER,
)
# The platform's own response headers: a function's are dropped, never merged.
_PLATFORM_HEADERS = "x-nimbus-"
# Every answer on the shared origin: scripts may run, but in an opaque origin of their own.
SHARED_ORIGIN_CSP = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
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


def host_namespace(host: str | None) -> str | None:
    """The namespace whose own origin the Host names ({namespace}.fn.{domain}[:port], lower case
    as browsers send it and as the gateway routes it), or None."""
    if not host or ".fn." not in host:
        return None
    match = _FUNCTION_HOST.fullmatch(host)
    return match.group(1) if match else None


def split_host_path(path: str) -> tuple[str, str]:
    """/{name}{rest} on a namespace's origin → (name, rest); raises NotFound."""
    parts = path[1:].split("/", 1)
    name = unquote(parts[0])
    if not _NAME.fullmatch(name):
        raise NotFound("the URL must be /{function} on the namespace's host")
    return name, "/" + parts[1] if len(parts) == 2 else ""


def source_ip(req: HttpRequest) -> str:
    """The client's address as the gateway saw it: never an X-Forwarded-For entry the client
    wrote (those come first; Envoy appends the peer's address last)."""
    vouched = req.header(SOURCE_IP_HEADER)
    if vouched:
        return vouched
    forwarded = [v for k, v in req.headers if k == "x-forwarded-for"]
    return forwarded[-1].rsplit(",", 1)[-1].strip() if forwarded else ""


def _body_field(body: bytes) -> tuple[str | None, bool]:
    if not body:
        return None, False
    try:
        return body.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True


def proxy_event(
    req: HttpRequest,
    namespace: str,
    name: str,
    rest: str,
    request_id: str,
    now: float,
    *,
    own_origin: bool = False,
) -> bytes:
    """The request in API Gateway's REST proxy event shape (pure). own_origin: it came to the
    namespace's host, where the function's path is /{name}."""
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
    base = "/{name}" if own_origin else f"{HTTP_PATH_PREFIX}{{namespace}}/{{name}}"
    event: dict[str, Any] = {
        "resource": base + ("/{proxy+}" if rest else ""),
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
                "sourceIp": source_ip(req),
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
    return HttpResponse(status, [*headers, *meta], body)


def _header_text(item: object) -> str:
    if isinstance(item, bool):
        return "true" if item else "false"
    return str(item)


def _cookie_for_host(cookie: str) -> str:
    """A Set-Cookie without its Domain attribute: a host-only cookie of the namespace's host."""
    name_value, *attributes = cookie.split(";")
    kept = [a for a in attributes if a.strip().partition("=")[0].strip().lower() != "domain"]
    return ";".join([name_value, *kept])


def for_origin(res: HttpResponse, *, own_origin: bool) -> HttpResponse:
    """The answer as the origin it goes out on allows (pure): on a namespace's own origin, cookies
    stay on its host; on the shared one there are none, and the page is sandboxed."""
    if own_origin:
        res.headers = [
            (k, _cookie_for_host(v)) if k.lower() == "set-cookie" else (k, v)
            for k, v in res.headers
        ]
    else:
        res.headers = [(k, v) for k, v in res.headers if k.lower() != "set-cookie"]
        res.headers.append(("content-security-policy", SHARED_ORIGIN_CSP))
    return res


class HttpTriggers:
    """The listener's handler: route, look up the trigger, run the function, shape the answer."""

    def __init__(
        self, lookup: Callable[[str, str], TriggerRecord | None], runner: Runner, clock: Clock
    ) -> None:
        self._lookup = lookup
        self._runner = runner
        self._clock = clock

    async def handle(self, req: HttpRequest) -> HttpResponse:
        """A request to the shared origin: /fn/{namespace}/{name}..."""
        try:
            namespace, name, rest = split_path(req.path)
        except NimbusError as err:
            return for_origin(nimbus_error_response(err), own_origin=False)
        return for_origin(await self._run(req, namespace, name, rest, False), own_origin=False)

    async def handle_host(self, req: HttpRequest) -> HttpResponse:
        """A request to a namespace's own origin: {namespace}.fn.{domain}/{name}..."""
        namespace = host_namespace(req.header("host"))
        try:
            if namespace is None:
                raise NotFound("no namespace in the host")
            name, rest = split_host_path(req.path)
        except NimbusError as err:
            return nimbus_error_response(err)
        return for_origin(await self._run(req, namespace, name, rest, True), own_origin=True)

    async def _run(
        self, req: HttpRequest, namespace: str, name: str, rest: str, own_origin: bool
    ) -> HttpResponse:
        try:
            trigger = self._lookup(namespace, name)
            if trigger is None:
                raise NotFound(f"no function at {req.path!r}")
            event = proxy_event(
                req,
                namespace,
                name,
                rest,
                str(uuid.uuid4()),
                self._clock.now(),
                own_origin=own_origin,
            )
            who = Principal(namespace=namespace, key_id="http-trigger", admin=False)
            result = await self._runner.invoke(who, name, trigger.qualifier, event, _DEADLINE_S)
        except NimbusError as err:
            return nimbus_error_response(err)
        return proxy_response(result)
