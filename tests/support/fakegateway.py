"""A fake of the gateway's public REST contract for the SDK and CLI unit tests: a tiny stdlib HTTP
server on 127.0.0.1 (the `gateway` fixture in tests/unit/conftest.py runs it)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "test-key"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    port: int


@dataclass
class GatewayState:
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    close_after_response: bool = False  # drop the keep-alive connection silently (idle timeout)
    hide_from_get: set[str] = field(default_factory=set)  # to simulate a create race
    versions: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )  # by function, number
    aliases: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=dict
    )  # by function, alias
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)  # by key id

    def paths(self) -> list[str]:
        return [f"{s.method} {s.path}" for s in self.seen]


def _error(status: int, code: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return status, {}, json.dumps({"code": code, "message": message, "details": []}).encode()


def _ok(data: Any) -> tuple[int, dict[str, str], bytes]:
    return 200, {}, json.dumps(data).encode()


def route(
    state: GatewayState, method: str, path: str, body: bytes
) -> tuple[int, dict[str, str], bytes]:
    url = urllib.parse.urlsplit(path)
    query = dict(urllib.parse.parse_qsl(url.query))
    parts = [urllib.parse.unquote(p) for p in url.path.split("/")[1:]]
    req = json.loads(body) if body and not url.path.endswith(":invoke") else {}
    if parts[:2] == ["v1", "keys"]:
        return route_keys(state, method, parts[2:], req)
    if parts[:2] != ["v1", "functions"]:
        return _error(404, 5, f"no route {url.path}")
    if len(parts) == 2:
        if method == "GET":
            fns = sorted(state.functions.values(), key=lambda f: f["name"])
            return _ok({"functions": fns} if fns else {})  # proto3 JSON leaves an empty list out
        name = req["name"]
        if name in state.functions:
            return _error(409, 6, f"function {name} already exists")
        zip_bytes = base64.b64decode(req["code"]["zip_base64"])
        fn = {
            "name": name,
            "runtime": req["runtime"],
            "handler": req["handler"],
            "memory_mb": req.get("memory_mb", 128),
            "timeout_s": req.get("timeout_s", 3),
            "namespace": "default",
            "code_sha256": hashlib.sha256(zip_bytes).hexdigest(),
            "code_size": str(len(zip_bytes)),
            "revision": "1",
        }
        if req.get("env"):
            fn["env"] = req["env"]
        state.functions[name] = fn
        return _ok(fn)
    name, _, verb = parts[2].partition(":")
    fn = state.functions.get(name)
    if verb == "invoke":
        if fn is None:
            return _error(404, 5, f"function {name} not found")
        headers = {
            "x-nimbus-request-id": "req-123",
            "x-nimbus-cold-start": "true",
            "x-nimbus-billed-ms": "7",
            "x-nimbus-executed-version": query.get("qualifier", "$LATEST"),
        }
        if fn["handler"] == "main.fails":
            headers["x-nimbus-function-error"] = "Unhandled"
            err = {
                "errorType": "ZeroDivisionError",
                "errorMessage": "division by zero",
                "stackTrace": ['  File "/var/task/main.py", line 2, in fails\n    return 1 / 0\n'],
            }
            return 200, headers, json.dumps(err).encode()
        return 200, headers, json.dumps({"echo": json.loads(body)}).encode()
    if fn is None or (method == "GET" and name in state.hide_from_get):
        return _error(404, 5, f"function {name} not found")
    if len(parts) == 3 and method == "GET":
        return _ok(fn)
    if len(parts) == 3 and method == "DELETE":
        del state.functions[name]
        return _ok({})
    if len(parts) == 3 and method == "PATCH":
        for k, v in req.items():
            if k == "env":
                fn["env"] = v if req.get("replace_env") else {**fn.get("env", {}), **v}
            elif k != "replace_env":
                fn[k] = v
        fn["revision"] = str(int(fn["revision"]) + 1)
        return _ok(fn)
    if len(parts) >= 4 and parts[3] in ("versions", "aliases"):
        return route_versions_aliases(state, fn, method, parts[3:], req)
    if parts[3:] == ["code"] and method == "PUT":
        zip_bytes = base64.b64decode(req["code"]["zip_base64"])
        fn.update(code_sha256=hashlib.sha256(zip_bytes).hexdigest(), code_size=str(len(zip_bytes)))
        fn["revision"] = str(int(fn["revision"]) + 1)
        return _ok(fn)
    return _error(404, 5, "no route")


def route_versions_aliases(
    state: GatewayState, fn: dict[str, Any], method: str, parts: list[str], req: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    versions = state.versions.setdefault(fn["name"], {})
    aliases = state.aliases.setdefault(fn["name"], {})
    if parts == ["versions"] and method == "POST":
        number = str(len(versions) + 1)
        v = {
            "version": number,
            "code_sha256": fn.get("code_sha256", ""),
            "created_at": f"t{number}",
            "description": req.get("description", ""),
            "config": dict(fn),
        }
        versions[number] = v
        return _ok(v)
    if parts == ["versions"] and method == "GET":
        return _ok({"versions": list(versions.values())})
    if parts == ["aliases"] and method == "GET":
        return _ok({"aliases": list(aliases.values())})
    if len(parts) == 2 and parts[0] == "versions":
        if parts[1] not in versions:
            return _error(404, 5, f"version {parts[1]} of {fn['name']} not found")
        if method == "DELETE":
            if any(a["version"] == parts[1] for a in aliases.values()):
                return _error(409, 9, f"version {parts[1]} is used by an alias")
            del versions[parts[1]]
            return _ok({})
        return _ok(versions[parts[1]])
    if len(parts) == 2 and parts[0] == "aliases":
        if method == "PUT":
            unknown = set(req) - {"version", "routing", "description"}
            if unknown:
                return _error(400, 3, f"unknown field {sorted(unknown)[0]}")
            aliases[parts[1]] = {"name": fn["name"], "alias": parts[1], **req, "revision": "1"}
            return _ok(aliases[parts[1]])
        if parts[1] not in aliases:
            return _error(404, 5, f"alias {parts[1]} of {fn['name']} not found")
        if method == "DELETE":
            del aliases[parts[1]]
            return _ok({})
        return _ok(aliases[parts[1]])
    return _error(404, 5, "no route")


def route_keys(
    state: GatewayState, method: str, parts: list[str], req: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    if not parts and method == "POST":
        key_id = f"k{len(state.keys) + 1}"
        key = {
            "key_id": key_id,
            "namespace": req.get("namespace") or "default",
            "admin": bool(req.get("admin")),
            "description": req.get("description", ""),
            "created_at": "t0",
        }
        state.keys[key_id] = key
        return _ok({**key, "api_key": f"nmb_{key_id}_secret"})
    if not parts and method == "GET":
        return _ok({"keys": list(state.keys.values())})
    if len(parts) == 1 and method == "DELETE":
        if state.keys.pop(parts[0], None) is None:
            return _error(404, 5, f"key {parts[0]} not found")
        return _ok({})
    return _error(404, 5, "no route")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # like the real gateway: no 40 ms Nagle/delayed-ACK stall
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep pytest output clean
        pass

    def _handle(self) -> None:
        state: GatewayState = self.server.state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        state.seen.append(
            Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                body,
                self.client_address[1],
            )
        )
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            status, headers, out = _error(401, 16, "missing or invalid API key")
        elif self.path == "/v1/plain-503":
            status, headers, out = 503, {"content-type": "text/plain"}, b"no healthy upstream"
        else:
            status, headers, out = route(state, self.command, self.path, body)
        self.send_response(status)
        self.send_header("Content-Type", headers.pop("content-type", "application/json"))
        self.send_header("Content-Length", str(len(out)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(out)
        self.wfile.flush()
        if state.close_after_response:
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@contextlib.contextmanager
def serving() -> Iterator[tuple[str, GatewayState]]:
    """Runs the fake on a free port; yields its URL and the state it records and answers from."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.block_on_close = False
    server.state = GatewayState()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.state  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
