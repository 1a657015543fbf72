"""The synchronous Python SDK over Nimbus's public REST API (v1).

    from nimbus.client import Client, zip_directory

    c = Client()  # NIMBUS_ENDPOINT / NIMBUS_API_KEY, else .nimbus/credentials.json
    c.create_function("hello", "python3.11", "main.handler", zip_directory("src"))
    r = c.invoke("hello", {"name": "world"})
    r.payload, r.request_id, r.cold_start, r.function_error

Methods return the JSON the gateway sent (dicts with the proto's snake_case field names; int64
fields such as `code_size` and `revision` arrive as strings, as proto3 JSON encodes them, and fields
at their zero value may be absent). A non-2xx answer raises `NimbusApiError`; an unreachable gateway
raises `NimbusConnectionError`. A function that fails is not an API error: `invoke` returns its
result with `function_error` set.

One `Client` holds one keep-alive connection and is not thread-safe; use one per thread.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.client.config import ClientConfig, resolve_config
from nimbus.client.errors import NimbusClientError, error_from_response
from nimbus.client.transport import Response, Transport

DEFAULT_TIMEOUT_S = 120.0
USER_AGENT = "nimbus-python/0.1"

_NO_EVENT: Any = object()


@dataclass(frozen=True, slots=True)
class InvokeResult:
    status: int
    # The function's return value (or, on a function error, {"errorType", "errorMessage",
    # "stackTrace"}); None when the body is empty or not JSON; `raw` always has the bytes.
    payload: Any
    raw: bytes
    request_id: str | None
    function_error: str | None
    cold_start: bool
    billed_ms: int | None
    executed_version: str | None
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.function_error is None

    def raise_for_function_error(self) -> None:
        if self.function_error is not None:
            raise FunctionError(self)


class FunctionError(NimbusClientError):
    """Raised only by `InvokeResult.raise_for_function_error()`: the function's code failed."""

    def __init__(self, result: InvokeResult) -> None:
        payload = result.payload if isinstance(result.payload, dict) else {}
        self.result = result
        self.error_type = str(payload.get("errorType") or result.function_error or "Error")
        self.error_message = str(payload.get("errorMessage") or "")
        super().__init__(f"{self.error_type}: {self.error_message}")


class Client:
    def __init__(
        self,
        endpoint: str | None = None,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        if config is None:
            config = resolve_config(
                env=os.environ if env is None else env,
                cwd=Path.cwd() if cwd is None else Path(cwd),
                endpoint=endpoint,
                api_key=api_key,
            )
        self.config = config
        self.endpoint = config.endpoint
        self.timeout_s = timeout_s
        self._transport = Transport(config.endpoint, timeout_s=timeout_s)
        self._base_headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if config.api_key:
            self._base_headers["Authorization"] = f"Bearer {config.api_key}"

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- functions --------------------------------------------------------------------------

    def create_function(
        self,
        name: str,
        runtime: str,
        handler: str,
        zip_bytes: bytes,
        memory_mb: int | None = None,
        timeout_s: int | None = None,
        env: Mapping[str, str] | None = None,
        description: str | None = None,
        max_concurrency: int | None = None,
        min_instances: int | None = None,
        instance_concurrency: int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": name,
            "runtime": runtime,
            "handler": handler,
            "code": _code(zip_bytes),
        }
        optional = {
            "memory_mb": memory_mb,
            "timeout_s": timeout_s,
            "env": dict(env) if env is not None else None,
            "description": description,
            "max_concurrency": max_concurrency,
            "min_instances": min_instances,
            "instance_concurrency": instance_concurrency,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        return self._object("POST", "/v1/functions", body)

    def update_function(self, name: str, **fields: Any) -> dict[str, Any]:
        """PATCH the given fields (runtime, handler, memory_mb, timeout_s, env, replace_env,
        description, max_concurrency, min_instances, instance_concurrency, expected_revision);
        None values are left out."""
        body = {k: (dict(v) if k == "env" else v) for k, v in fields.items() if v is not None}
        return self._object("PATCH", function_path(name), body)

    def update_code(
        self, name: str, zip_bytes: bytes, expected_revision: int | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"code": _code(zip_bytes)}
        if expected_revision:
            body["expected_revision"] = expected_revision
        return self._object("PUT", function_path(name, "/code"), body)

    def get_function(self, name: str) -> dict[str, Any]:
        return self._object("GET", function_path(name))

    def list_functions(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/functions").get("functions") or [])

    def delete_function(self, name: str) -> dict[str, Any]:
        return self._object("DELETE", function_path(name))

    # -- versions, aliases ------------------------------------------------------------------

    def publish_version(
        self, name: str, description: str | None = None, expected_revision: int | None = None
    ) -> dict[str, Any]:
        """Snapshots $LATEST's code and config as the next immutable version; returns it. A non-zero
        `expected_revision` publishes only if $LATEST is still at that revision (else 409)."""
        body: dict[str, Any] = {"description": description} if description else {}
        if expected_revision:
            body["expected_revision"] = expected_revision
        return self._object("POST", function_path(name, "/versions"), body)

    def list_versions(self, name: str) -> list[dict[str, Any]]:
        return list(self.request("GET", function_path(name, "/versions")).get("versions") or [])

    def get_version(self, name: str, version: str | int) -> dict[str, Any]:
        return self._object("GET", function_path(name, "/versions/" + _seg(str(version))))

    def delete_version(self, name: str, version: str | int) -> dict[str, Any]:
        """409 while an alias points to the version."""
        return self._object("DELETE", function_path(name, "/versions/" + _seg(str(version))))

    def put_alias(
        self,
        name: str,
        alias: str,
        version: str | int,
        *,
        routing_version: str | None = None,
        routing_weight: float | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Creates or moves an alias to `version`; with `routing_version`, a share `routing_weight`
        (0.0-1.0) of the calls goes to that second version instead."""
        body: dict[str, Any] = {"version": str(version)}
        if routing_version is not None:
            body["routing"] = {
                "version": str(routing_version),
                "weight": float(routing_weight or 0.0),
            }
        if description:
            body["description"] = description
        return self._object("PUT", function_path(name, "/aliases/" + _seg(alias)), body)

    def get_alias(self, name: str, alias: str) -> dict[str, Any]:
        return self._object("GET", function_path(name, "/aliases/" + _seg(alias)))

    def delete_alias(self, name: str, alias: str) -> dict[str, Any]:
        return self._object("DELETE", function_path(name, "/aliases/" + _seg(alias)))

    def list_aliases(self, name: str) -> list[dict[str, Any]]:
        return list(self.request("GET", function_path(name, "/aliases")).get("aliases") or [])

    # -- invoke -----------------------------------------------------------------------------

    def invoke(
        self, name: str, event: Any = _NO_EVENT, qualifier: str | None = None
    ) -> InvokeResult:
        """Runs the function and waits. `event` is any JSON value, or bytes sent as they are;
        without one, the event is `{}`."""
        path = function_path(name, ":invoke") + _query(qualifier=qualifier)
        resp = self._send("POST", path, _event_bytes(event), "application/json")
        if resp.status >= 400:
            raise error_from_response(resp.status, resp.reason, resp.headers, resp.body)
        return invoke_result(resp.status, resp.headers, resp.body)

    def invoke_async(self, name: str, event: Any = _NO_EVENT, qualifier: str | None = None) -> str:
        """Queues the event; returns the invocation id once the event is durable."""
        path = function_path(name, ":invokeAsync") + _query(qualifier=qualifier)
        resp = self._send("POST", path, _event_bytes(event), "application/json")
        return str(_parse(resp).get("invocation_id", ""))

    def publish(self, subject: str, message: Any = _NO_EVENT) -> dict[str, Any]:
        """Publishes a message on a subject of the key's namespace, where its subject triggers
        take it; returns {"subject", "sequence", "duplicate"} once the message is stored."""
        path = "/v1/subjects/" + _seg(subject) + ":publish"
        answer: dict[str, Any] = _parse(
            self._send("POST", path, _event_bytes(message), "application/json")
        )
        return answer

    def get_invocation(self, invocation_id: str) -> dict[str, Any]:
        return self._object("GET", "/v1/invocations/" + _seg(invocation_id))

    # -- logs, metrics, usage, triggers, keys -----------------------------------------------

    def get_logs(
        self,
        name: str,
        request_id: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        query = _query(request_id=request_id, since=since, limit=limit)
        return self._object("GET", function_path(name, "/logs") + query)

    def get_metrics(self, name: str, minutes: int | None = None) -> dict[str, Any]:
        """Per-minute `buckets` of the last `minutes` (default 60, at most 1440), oldest first."""
        return self._object("GET", function_path(name, "/metrics") + _query(minutes=minutes))

    def get_usage(self, from_: str | None = None, to: str | None = None) -> list[dict[str, Any]]:
        return list(self.get_usage_report(from_, to).get("rows") or [])

    def get_usage_report(self, from_: str | None = None, to: str | None = None) -> dict[str, Any]:
        """The `rows` per function, version and UTC day (YYYY-MM-DD, inclusive; default this month
        so far), the range used (`from`, `to`) and the totals."""
        return self._object("GET", "/v1/usage" + _query(**{"from": from_, "to": to}))

    def create_trigger(self, name: str, type: str, **fields: Any) -> dict[str, Any]:  # noqa: A002
        body = {"type": type, **{k: v for k, v in fields.items() if v is not None}}
        return self._object("POST", function_path(name, "/triggers"), body)

    def list_triggers(self, name: str) -> list[dict[str, Any]]:
        return list(self.request("GET", function_path(name, "/triggers")).get("triggers") or [])

    def delete_trigger(self, name: str, trigger_id: str) -> dict[str, Any]:
        return self._object("DELETE", function_path(name, "/triggers/" + _seg(trigger_id)))

    def create_key(
        self, namespace: str | None = None, description: str | None = None, admin: bool = False
    ) -> dict[str, Any]:
        """Mints a key (admin keys only);
        the answer's `api_key` is the only time the key is shown."""
        body: dict[str, Any] = {
            k: v for k, v in {"namespace": namespace, "description": description}.items() if v
        }
        if admin:
            body["admin"] = True
        return self._object("POST", "/v1/keys", body)

    def list_keys(self) -> list[dict[str, Any]]:
        """The keys this key may see (ids, namespaces, descriptions; never the keys themselves)."""
        return list(self.request("GET", "/v1/keys").get("keys") or [])

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self._object("DELETE", "/v1/keys/" + _seg(key_id))

    # -- large code packages (gRPC, see nimbus.client.upload) -------------------------------

    def upload_function(
        self, name: str, runtime: str, handler: str, zip_bytes: bytes, **kwargs: Any
    ) -> dict[str, Any]:
        """`create_function` with the code streamed over gRPC in chunks, for packages over ~1 MB.
        Keyword arguments as `nimbus.client.upload.upload_function` (config fields, `progress`)."""
        from nimbus.client.upload import upload_function

        return upload_function(self, name, runtime, handler, zip_bytes, **kwargs)

    def upload_code(self, name: str, zip_bytes: bytes, **kwargs: Any) -> dict[str, Any]:
        """`update_code` streamed over gRPC in chunks; see `nimbus.client.upload.upload_code`."""
        from nimbus.client.upload import upload_code

        return upload_code(self, name, zip_bytes, **kwargs)

    # -- generic ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """Any route: `body` is a JSON value (or bytes, sent as they are); returns the parsed JSON
        answer ({} for an empty one). `path` starts with /v1/... and may carry a query string."""
        if body is None:
            data, ctype = None, None
        elif isinstance(body, bytes | bytearray | memoryview):
            data, ctype = bytes(body), "application/json"
        else:
            data, ctype = _dumps(body), "application/json"
        return _parse(self._send(method.upper(), path, data, ctype))

    def _object(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """request() for a route whose answer is a JSON object (every one above)."""
        answer: dict[str, Any] = self.request(method, path, body)
        return answer

    def request_raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = "application/json",
    ) -> Response:
        """The status, headers and body as received; never raises for an error status."""
        return self._send(method.upper(), path, body, content_type)

    def _send(
        self, method: str, path: str, body: bytes | None, content_type: str | None
    ) -> Response:
        headers = dict(self._base_headers)
        if content_type is not None and body is not None:
            headers["Content-Type"] = content_type
        return self._transport.request(method, path, body, headers)


def invoke_result(status: int, headers: Mapping[str, str], body: bytes) -> InvokeResult:
    """Reads an invoke answer; `headers` has lower-case names."""
    try:
        payload = json.loads(body) if body else None
    except ValueError:
        payload = None
    billed = headers.get("x-nimbus-billed-ms", "").strip()
    try:
        billed_ms: int | None = int(float(billed)) if billed else None
    except ValueError:
        billed_ms = None
    return InvokeResult(
        status=status,
        payload=payload,
        raw=body,
        request_id=headers.get("x-nimbus-request-id") or None,
        function_error=headers.get("x-nimbus-function-error") or None,
        cold_start=headers.get("x-nimbus-cold-start", "").strip().lower() in ("1", "true", "yes"),
        billed_ms=billed_ms,
        executed_version=headers.get("x-nimbus-executed-version") or None,
        headers=dict(headers),
    )


def _parse(resp: Response) -> Any:
    if resp.status >= 400:
        raise error_from_response(resp.status, resp.reason, resp.headers, resp.body)
    if not resp.body.strip():
        return {}
    try:
        return json.loads(resp.body)
    except ValueError as e:
        raise NimbusClientError(
            f"the gateway answered HTTP {resp.status} with "
            f"a body that is not JSON: {resp.body[:200]!r}"
        ) from e


def _code(zip_bytes: bytes) -> dict[str, str]:
    return {"zip_base64": base64.b64encode(zip_bytes).decode("ascii")}


def _event_bytes(event: Any) -> bytes:
    if event is _NO_EVENT:
        return b"{}"
    if isinstance(event, bytes | bytearray | memoryview):
        return bytes(event)
    return _dumps(event)


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _seg(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def function_path(name: str, suffix: str = "") -> str:
    return "/v1/functions/" + _seg(name) + suffix


def _query(**params: Any) -> str:
    pairs = {k: str(v) for k, v in params.items() if v is not None and v != ""}
    return "?" + urllib.parse.urlencode(pairs) if pairs else ""
