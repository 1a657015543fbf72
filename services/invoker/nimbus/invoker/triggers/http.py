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

The request becomes an event in the trigger's payload format, 1.0 (API Gateway REST) or 2.0 (HTTP
API / function URL), with its path relative to the trigger's mount point (payloads.py has both
formats, the requests and the answers). requestContext's sourceIp is the address the gateway
vouches for (x-nimbus-source-ip, which Envoy sets from the connection, or else the last
X-Forwarded-For entry, the one Envoy appended), never what the client put in X-Forwarded-For. On
the shared origin the request's Cookie header is dropped too: the cookies a browser sends there
are the gateway origin's (the console's), never a function's. A failing function answers 502 with
{"message": "Internal server error"} (its stack trace is not shown to the public); a function
without an http trigger is a 404, as is an unknown one.

Why a listener of its own rather than a transcoded gRPC method: a transcoded response can only
carry the status codes gRPC maps to, Envoy's transcoder rejects query parameters the request
message does not declare, and the path after the function name is free-form.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Protocol
from urllib.parse import unquote

from nimbus.common.auth import Principal
from nimbus.common.clock import Clock
from nimbus.common.errors import NimbusError, NotFound
from nimbus.common.triggers import HTTP_PATH_PREFIX, TriggerRecord, http_path
from nimbus.invoker.http.errors import nimbus_error_response
from nimbus.invoker.http.server import HttpRequest, HttpResponse
from nimbus.invoker.sync.invoke import InvokeResult
from nimbus.invoker.triggers.payloads import Mount, build_event, shape_response

_NAMESPACE = re.compile(r"[a-z][a-z0-9-]{0,62}")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
# A namespace's own origin: {namespace}.fn.{domain}[:port].
_FUNCTION_HOST = re.compile(r"([a-z][a-z0-9-]{0,62})\.fn\.[^/]+")
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
        mount = Mount(namespace, name, http_path(namespace, name), rest, own_origin=False)
        return for_origin(await self._run(req, mount), own_origin=False)

    async def handle_host(self, req: HttpRequest) -> HttpResponse:
        """A request to a namespace's own origin: {namespace}.fn.{domain}/{name}..."""
        namespace = host_namespace(req.header("host"))
        try:
            if namespace is None:
                raise NotFound("no namespace in the host")
            name, rest = split_host_path(req.path)
        except NimbusError as err:
            return nimbus_error_response(err)
        mount = Mount(namespace, name, f"/{name}", rest, own_origin=True)
        return for_origin(await self._run(req, mount), own_origin=True)

    async def _run(self, req: HttpRequest, mount: Mount) -> HttpResponse:
        try:
            trigger = self._lookup(mount.namespace, mount.name)
            if trigger is None:
                raise NotFound(f"no function at {req.path!r}")
            fmt = trigger.format
            event = build_event(req, mount, fmt, str(uuid.uuid4()), self._clock.now())
            who = Principal(namespace=mount.namespace, key_id="http-trigger", admin=False)
            result = await self._runner.invoke(
                who, mount.name, trigger.qualifier, event, _DEADLINE_S
            )
        except NimbusError as err:
            return nimbus_error_response(err)
        return shape_response(result, fmt)
