"""The Nimbus shim of the `provided` (custom) runtime: the AWS Lambda
Runtime API inside the sandbox.

STANDARD LIBRARY ONLY, like the Python shim, whose codec it reuses (../python/bootstrap.py).

It serves the Runtime API (2018-06-01) on 127.0.0.1 inside the sandbox's own network namespace,
then narrows its seccomp filter so nothing in the sandbox can listen again (the listening socket it
already has keeps working), and waits for LOAD. LOAD starts the function's `bootstrap` executable
with AWS_LAMBDA_RUNTIME_API pointing here. The runtime's first GET .../invocation/next means init
is done (READY); POST .../init/error or an early exit is INIT_ERROR. Each INVOKE frame answers the
pending /next; the runtime's POST .../response or .../error becomes the RESULT or ERROR frame. If
the runtime process dies, the shim reports a fatal Runtime.ExitError and exits with it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# This script's directory is sys.path[0] in the sandbox, a path mypy does not search.
from nolisten import forbid_listen  # type: ignore[import-not-found]

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location(
    "nimbus_shim", os.path.join(_HERE, "..", "python", "bootstrap.py")
)
assert _spec is not None and _spec.loader is not None
shim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shim)

PREFIX = "/2018-06-01/runtime/"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"


class Invocation:
    def __init__(self, request_id: str, header: dict[str, Any], body: bytes) -> None:
        self.request_id = request_id
        self.header = header
        self.body = body


class RuntimeApi:
    """State shared by the HTTP threads and the main loop; events flow to the main loop by queue."""

    def __init__(self, arn: str) -> None:
        self.arn = arn
        self.events: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self._cond = threading.Condition()
        self._next: Invocation | None = None
        self.current: str | None = None
        # True from LOAD to READY and during each call; otherwise a runtime exit ends the shim.
        self.busy = True
        self._asked = False

    def offer(self, invocation: Invocation) -> None:
        with self._cond:
            self._next = invocation
            self.current = invocation.request_id
            self._cond.notify_all()

    def wait_next(self) -> Invocation:
        with self._cond:
            if not self._asked:
                self._asked = True
                self.events.put(("next",))
            while self._next is None:
                self._cond.wait()
            invocation, self._next = self._next, None
            return invocation


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: RuntimeApi

    def setup(self) -> None:
        super().setup()
        # Each response goes out in one write, and without Nagle's delay.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # stderr is the function's log

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            "Content-Type: application/json",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        lines.append(f"Content-Length: {len(body)}")
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _error(self, status: int, error_type: str, message: str) -> None:
        self._reply(status, json.dumps({"errorType": error_type, "errorMessage": message}).encode())

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        if self.path != PREFIX + "invocation/next":
            return self._error(404, "NotFound", f"no route {self.path}")
        inv = self.api.wait_next()
        h = inv.header
        headers = {
            "Lambda-Runtime-Aws-Request-Id": inv.request_id,
            "Lambda-Runtime-Deadline-Ms": str(h.get("deadline_ms", 0)),
            "Lambda-Runtime-Invoked-Function-Arn": self.api.arn,
            "Lambda-Runtime-Trace-Id": trace_id(inv.request_id),
        }
        # As on Lambda, only when the invoke carried them.
        if h.get("client_context"):
            headers["Lambda-Runtime-Client-Context"] = json.dumps(h["client_context"])
        if h.get("identity"):
            headers["Lambda-Runtime-Cognito-Identity"] = json.dumps(h["identity"])
        self._reply(200, inv.body, headers)

    def do_POST(self) -> None:
        body = self._body()
        path = self.path
        if path == PREFIX + "init/error":
            self.api.events.put(
                ("init_error", error_body(body, self.headers.get(ERROR_TYPE_HEADER)))
            )
            return self._reply(202, b'{"status":"OK"}')
        parts = path[len(PREFIX) :].split("/") if path.startswith(PREFIX) else []
        if len(parts) != 3 or parts[0] != "invocation" or parts[2] not in ("response", "error"):
            return self._error(404, "NotFound", f"no route {path}")
        request_id = parts[1]
        if request_id != self.api.current:
            return self._error(
                400, "InvalidRequestID", f"{request_id} is not the current invocation"
            )
        self.api.current = None
        if parts[2] == "response":
            self.api.events.put(("RESULT", request_id, body))
        else:
            err = error_body(body, self.headers.get(ERROR_TYPE_HEADER))
            self.api.events.put(("ERROR", request_id, json.dumps(err).encode()))
        self._reply(202, b'{"status":"OK"}')


def error_body(body: bytes, error_type: str | None) -> dict[str, Any]:
    try:
        err = json.loads(body) if body else {}
    except ValueError:
        err = {"errorMessage": body.decode("utf-8", "replace")}
    if not isinstance(err, dict):
        err = {"errorMessage": str(err)}
    err.setdefault("errorType", error_type or "Runtime.Unknown")
    err.setdefault("errorMessage", "")
    err["stackTrace"] = err.get("stackTrace") or []
    return err


def trace_id(request_id: str) -> str:
    digits = "".join(c for c in request_id if c in "0123456789abcdef").ljust(24, "0")
    return f"Root=1-{int(time.time()):08x}-{digits[:24]};Parent={digits[:16]};Sampled=0"


def start_runtime(header: dict[str, Any], api_addr: str) -> subprocess.Popen[bytes]:
    task_root = header["task_root"]
    path = os.path.join(task_root, "bootstrap")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise shim.InitFailure(
            {
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": (
                    f"Couldn't find valid bootstrap(s): [{path}] (it must be an executable file)"
                ),
                "stackTrace": [],
            }
        )
    env = {
        **os.environ,
        **(header.get("env") or {}),
        "AWS_LAMBDA_RUNTIME_API": api_addr,
        "_HANDLER": header.get("handler", ""),
        "LAMBDA_TASK_ROOT": task_root,
    }
    try:
        # stdout and stderr are inherited: they are the function's log pipe.
        return subprocess.Popen([path], cwd=task_root, env=env, stdin=subprocess.DEVNULL)
    except OSError as err:
        raise shim.InitFailure(
            {
                "errorType": "Runtime.InvalidEntrypoint",
                "errorMessage": f"cannot run bootstrap: {err}",
                "stackTrace": [],
            }
        ) from None


def watch(proc: subprocess.Popen[bytes], api: RuntimeApi) -> None:
    status = proc.wait()
    api.events.put(("exited", status))
    if not api.busy:
        # Between calls nobody would hear it: exit too, so the agent sees a dead instance at once.
        shim.flush_output()
        os._exit(1)


def exit_text(status: int) -> str:
    return (
        f"signal: {'killed' if status == -9 else -status}"
        if status < 0
        else f"exit status {status}"
    )


def main() -> None:
    port = int(os.environ.pop("NIMBUS_RUNTIME_API_PORT", "0") or 0)
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    api_addr = f"127.0.0.1:{server.server_address[1]}"
    forbid_listen()
    # Connected means ready: a sandbox whose shim could not narrow itself never joins the pool.
    sock, stream = shim.connect()
    frame = shim.read_frame(stream)
    if frame is None:
        return
    kind, header, _ = frame
    if kind != "LOAD":
        raise SystemExit(f"nimbus runtime: expected LOAD, got {kind!r}")
    api = RuntimeApi(header.get("function_arn") or "")
    Handler.api = api
    threading.Thread(target=server.serve_forever, daemon=True).start()

    started = time.perf_counter_ns()
    try:
        proc = start_runtime(header, api_addr)
    except shim.InitFailure as failure:
        shim.log_error(failure.error)
        sock.sendall(shim.encode("INIT_ERROR", failure.error))
        sys.exit(1)
    threading.Thread(target=watch, args=(proc, api), daemon=True).start()
    event = api.events.get()
    if event[0] != "next":
        proc.kill()
        if event[0] == "init_error":
            error = event[1]
        else:
            text = f"Runtime exited with error: {exit_text(event[1])}"
            error = {"errorType": "Runtime.ExitError", "errorMessage": text}
            shim.log_error(error)
        shim.flush_output()
        sock.sendall(shim.encode("INIT_ERROR", error))
        sys.exit(1)
    sock.sendall(
        shim.encode("READY", {"init_duration_us": (time.perf_counter_ns() - started) // 1000})
    )
    api.busy = False

    while True:
        frame = shim.read_frame(stream)
        if frame is None:
            proc.kill()
            return
        kind, header, body = frame
        request_id = header.get("request_id", "")
        begun = time.perf_counter_ns()
        api.busy = True
        api.offer(Invocation(request_id, header, body))
        while True:
            event = api.events.get()
            if event[0] in ("RESULT", "ERROR") and event[1] == request_id:
                reply = {
                    "request_id": request_id,
                    "duration_us": (time.perf_counter_ns() - begun) // 1000,
                }
                shim.flush_output()
                sock.sendall(shim.encode(event[0], reply, event[2]))
                api.busy = False
                break
            if event[0] == "exited":
                text = (
                    f"RequestId: {request_id} Error: Runtime exited with error: "
                    f"{exit_text(event[1])}"
                )
                err = {"errorType": "Runtime.ExitError", "errorMessage": text, "stackTrace": []}
                took_us = (time.perf_counter_ns() - begun) // 1000
                reply = {"request_id": request_id, "duration_us": took_us, "fatal": True}
                sock.sendall(shim.encode("ERROR", reply, json.dumps(err).encode()))
                sys.exit(1)


if __name__ == "__main__":
    main()
