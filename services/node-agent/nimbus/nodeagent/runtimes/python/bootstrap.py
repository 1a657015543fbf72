"""The Nimbus Python runtime shim: runs inside an instance, loads the handler, serves calls.

STANDARD LIBRARY ONLY: it runs under the sandbox's interpreter (/usr/bin/python3.11), not our venv.

It starts generic, before anyone knows which function it will run (a warm-pool sandbox): it connects
to the agent's Unix socket (NIMBUS_SOCKET) and waits for one LOAD frame naming the code directory,
the handler ("module.func") and the function's environment. Then it imports the handler, sends READY
(or INIT_ERROR and exits) and answers INVOKE frames for the rest of its life: one at a time on this
thread, or, when LOAD says instance_concurrency N > 1, on N worker threads (a handler may be plain
blocking code), each reply naming its request_id. The wire format is documented in
nimbus/nodeagent/protocol.py; this file keeps its own copy of the codec, which the `provided`
runtime shim reuses. stdout and stderr belong to the function (the agent captures them per call):
the protocol never uses them.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import struct
import sys
import time

# Not `from typing import TYPE_CHECKING`: importing typing alone costs ~3 ms of every cold start.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO

# Cold start is interpreter start plus these imports: asyncio (~50 ms) is imported only when a
# handler returns an awaitable, traceback only when something failed, ctypes and signal (~9 ms)
# only under the process driver, which asks for a death signal.

PREFIX = struct.Struct("!II")
MAX_FRAME_BYTES = 96 * 1024 * 1024
_PR_SET_PDEATHSIG = 1
_THIS_FILE = os.path.abspath(__file__)
# json.dumps(..., separators=(",", ":")) without making an encoder at every call (thread-safe: each
# encode keeps its state to itself).
_dumps = json.JSONEncoder(separators=(",", ":")).encode


# -- the codec (mirrors protocol.py) -----------------------------------------------------------


def encode(kind: str, header: dict[str, Any], body: bytes = b"") -> bytes:
    head = _dumps({"type": kind, **header}).encode()
    return b"".join((PREFIX.pack(len(head), len(body)), head, body))


def read_frame(stream: BinaryIO) -> tuple[str, dict[str, Any], bytes] | None:
    """(type, header, body), or None when the agent closed the connection."""
    prefix = stream.read(PREFIX.size)
    if len(prefix) < PREFIX.size:
        return None
    header_len, body_len = PREFIX.unpack(prefix)
    if header_len + body_len > MAX_FRAME_BYTES:
        raise ValueError(f"frame of {header_len + body_len} bytes is too large")
    data = stream.read(header_len + body_len)
    if len(data) < header_len + body_len:
        return None
    header = json.loads(data[:header_len])
    return header.pop("type"), header, data[header_len:]


# -- what the handler sees ---------------------------------------------------------------------


class _Attrs:
    """A plain object of the given attributes (awslambdaric's make_obj_from_dict)."""

    def __init__(self, **attrs: Any) -> None:
        self.__dict__.update(attrs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.__dict__!r})"


class CognitoIdentity(_Attrs):
    pass


class Client(_Attrs):
    pass


class ClientContext(_Attrs):
    pass


def client_context(raw: Any) -> ClientContext | None:
    """Lambda's context.client_context from the invoke's client context (a JSON object), if any."""
    if not isinstance(raw, dict):
        return None
    client = raw.get("client")
    return ClientContext(
        client=Client(**client) if isinstance(client, dict) else None,
        custom=raw.get("custom"),
        env=raw.get("env"),
    )


# What LOAD said about this instance (its ARN, log group and stream); the same for every call.
_instance: dict[str, Any] = {}
# The call in flight, for the request id in log records (see install_log_handler).
_current_request_id = ""


class Context:
    """Lambda's context object, with the names awslambdaric's LambdaContext has, plus Nimbus' own
    (request_id, memory_limit_mb as an int, get_remaining_time_ms)."""

    def __init__(self, header: dict[str, Any]) -> None:
        inst = _instance
        self.request_id: str = header.get("request_id", "")
        self.aws_request_id = self.request_id
        self.function_name: str = header.get("function_name", "")
        self.function_version: str = header.get("function_version", "")
        self.memory_limit_mb: int = int(header.get("memory_limit_mb", 0))
        # A string on Lambda too (awslambdaric reads it from AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
        self.memory_limit_in_mb = str(self.memory_limit_mb)
        self.invoked_function_arn: str = inst.get("function_arn", "")
        self.log_group_name: str = inst.get("log_group_name", "")
        self.log_stream_name: str = inst.get("log_stream_name", "")
        self.identity = CognitoIdentity(cognito_identity_id=None, cognito_identity_pool_id=None)
        self.client_context = client_context(header.get("client_context"))
        self.tenant_id = None
        self._deadline_ms: int = int(header.get("deadline_ms", 0))

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))

    get_remaining_time_ms = get_remaining_time_in_millis

    def log(self, msg: str) -> None:
        sys.stdout.write(str(msg))
        sys.stdout.flush()

    def __repr__(self) -> str:
        return (
            f"LambdaContext([aws_request_id={self.aws_request_id},"
            f"log_group_name={self.log_group_name},log_stream_name={self.log_stream_name},"
            f"function_name={self.function_name},memory_limit_in_mb={self.memory_limit_in_mb},"
            f"function_version={self.function_version},"
            f"invoked_function_arn={self.invoked_function_arn},"
            f"client_context={self.client_context},identity={self.identity}])"
        )


def log_error(error: dict[str, Any]) -> None:
    """An unhandled error in the function's log, as Lambda's Python runtime writes it:
    "[ERROR] Type: message" and the traceback, in one write (threads cannot split it)."""
    trace = "".join(str(line) for line in error.get("stackTrace") or [])
    text = (
        f"[ERROR] {error.get('errorType')}: {error.get('errorMessage')}\n"
        f"Traceback (most recent call last):\n{trace}"
    )
    stream = sys.__stderr__
    if stream is None:
        return
    try:
        stream.write(text if text.endswith("\n") else text + "\n")
        stream.flush()
    except Exception:  # a closed stderr loses the line, not the call
        pass


def install_log_handler() -> None:
    """Lambda's root logging handler, when the function's code uses `logging` and configured no
    handler itself: records go to the log as "[LEVEL]\tTIMESTAMP\tREQUEST_ID\tmessage", so the
    usual `logging.getLogger().setLevel(logging.INFO)` shows INFO lines as on Lambda. Only then:
    importing logging for every function would cost every cold start."""
    if "logging" not in sys.modules:
        return
    import logging  # already imported: free

    if logging.getLogger().handlers:
        return

    class LambdaLoggerFilter(logging.Filter):
        def filter(self, record: Any) -> bool:
            record.aws_request_id = _current_request_id
            return True

    handler = logging.StreamHandler(sys.__stderr__)
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    handler.addFilter(LambdaLoggerFilter())
    logging.getLogger().addHandler(handler)


def error_object(
    err: BaseException, error_type: str | None = None, message: str | None = None
) -> dict[str, Any]:
    import traceback

    frames = [
        f for f in traceback.extract_tb(err.__traceback__) if not _is_runtime_frame(f.filename)
    ]
    return {
        "errorType": error_type or type(err).__name__,
        "errorMessage": str(err) if message is None else message,
        "stackTrace": traceback.format_list(frames),
    }


def _is_runtime_frame(filename: str) -> bool:
    return filename == _THIS_FILE or filename.startswith("<frozen importlib")


# -- init ----------------------------------------------------------------------------------------


class InitFailure(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["errorMessage"])
        self.error = error


def load_handler(spec: str) -> Callable[..., Any]:
    module_path, _, func_name = spec.rpartition(".")
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as err:
        raise InitFailure(
            error_object(
                err, "Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {err}"
            )
        ) from err
    except ImportError as err:
        raise InitFailure(
            error_object(
                err, "Runtime.ImportModuleError", f"Unable to import module '{module_name}': {err}"
            )
        ) from err
    except Exception as err:
        # Code at import time raised: report it as Lambda does, by the exception's own type.
        raise InitFailure(error_object(err)) from err
    handler: Callable[..., Any] | None = getattr(module, func_name, None)
    if handler is None or not callable(handler):
        raise InitFailure(
            {
                "errorType": "Runtime.HandlerNotFound",
                "errorMessage": f"Handler '{func_name}' missing on module '{module_name}'",
                "stackTrace": [],
            }
        )
    return handler


def die_with_parent(agent_pid: int) -> None:
    """Asks the kernel to SIGKILL us when the agent dies, even by kill -9 (Linux only).

    Only where the agent is our parent (the process driver sets NIMBUS_AGENT_PID). In a runc
    container our parent is first `runc run` itself, which exits right after starting us: a death
    signal armed then would kill us. There, the agent closing our socket ends us instead."""
    if not agent_pid:
        return
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    # The agent may have died before prctl took effect; then nobody would ever kill us.
    if os.getppid() != agent_pid:
        os._exit(1)


# -- the call loop -------------------------------------------------------------------------------


class Loop:
    """One event loop for the instance's life, created on the first async call, so clients created
    at import or in an earlier call keep working."""

    def __init__(self) -> None:
        self._loop: Any = None

    def run(self, awaitable: Any) -> Any:
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop.run_until_complete(awaitable)


class SharedLoop(Loop):
    """With concurrent calls: one event loop on its own thread, so async handlers overlap on it
    while each worker thread waits for its own coroutine."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self._lock = threading.Lock()

    def run(self, awaitable: Any) -> Any:
        import asyncio

        with self._lock:
            if self._loop is None:
                import threading

                self._loop = asyncio.new_event_loop()
                threading.Thread(
                    target=self._loop.run_forever, name="nimbus-loop", daemon=True
                ).start()

        async def wait() -> Any:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wait(), self._loop).result()


def invoke(
    handler: Callable[..., Any], loop: Loop, header: dict[str, Any], body: bytes
) -> tuple[str, bytes, int]:
    """Runs one call; (frame type, body, duration in µs)."""
    global _current_request_id
    started = time.perf_counter_ns()
    kind = "RESULT"
    _current_request_id = header.get("request_id", "")
    try:
        try:
            event = json.loads(body) if body else {}
        except ValueError as err:
            raise _Marked("Runtime.UnmarshalError", f"Unable to unmarshal input: {err}") from None
        result = handler(event, Context(header))
        if hasattr(result, "__await__"):
            result = loop.run(result)
        try:
            out = _dumps(result).encode()
        except (TypeError, ValueError) as err:
            raise _Marked("Runtime.MarshalError", f"Unable to marshal response: {err}") from None
    except _Marked as err:
        error = {"errorType": err.error_type, "errorMessage": str(err), "stackTrace": []}
        log_error(error)
        kind, out = "ERROR", json.dumps(error).encode()
    except Exception as err:
        error = error_object(err)
        log_error(error)
        kind, out = "ERROR", json.dumps(error, default=str).encode()
    return kind, out, (time.perf_counter_ns() - started) // 1000


class _Marked(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


def flush_output() -> None:
    """Everything the call printed reaches the agent's log pipe before the reply frame does."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # a handler may have replaced or closed them; logs are best effort
            pass


def connect() -> tuple[socket.socket, BinaryIO]:
    env = os.environ
    # The plumbing variables are the runtime's,
    # not the function's: take them out of its environment.
    die_with_parent(int(env.pop("NIMBUS_AGENT_PID", "0") or 0))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(env.pop("NIMBUS_SOCKET"))
    return sock, sock.makefile("rb")


def apply_load(header: dict[str, Any]) -> None:
    """Becomes the function: its environment, its code directory first on sys.path, cwd there."""
    task_root = header["task_root"]
    os.environ.update(header.get("env") or {})
    for key in ("function_arn", "log_group_name", "log_stream_name"):
        _instance[key] = header.get(key) or ""
    os.chdir(task_root)
    # sys.path[0] is this script's directory; the function's code must come first instead,
    # so a user module may even be called "bootstrap". PYTHONPATH from the function's env is read
    # here because the interpreter started before it was known.
    extra = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[0:1] = [task_root, *extra]


def main() -> None:
    sock, stream = connect()
    frame = read_frame(stream)
    if frame is None:
        return  # stopped while still in the warm pool
    kind, header, _ = frame
    if kind != "LOAD":
        raise SystemExit(f"nimbus runtime: expected LOAD, got {kind!r}")
    started = time.perf_counter_ns()
    try:
        apply_load(header)
        handler = load_handler(header["handler"])
    except InitFailure as failure:
        flush_output()
        log_error(failure.error)
        sock.sendall(encode("INIT_ERROR", failure.error))
        sys.exit(1)
    install_log_handler()
    flush_output()
    sock.sendall(encode("READY", {"init_duration_us": (time.perf_counter_ns() - started) // 1000}))

    workers = int(header.get("instance_concurrency") or 1)
    if workers > 1:
        serve_concurrently(handler, sock, stream, workers)
        return
    loop = Loop()
    while True:
        frame = read_frame(stream)
        if frame is None:
            return  # the agent closed the connection: the instance is being stopped
        kind, header, body = frame
        if kind != "INVOKE":
            raise SystemExit(f"nimbus runtime: unexpected frame {kind!r}")
        reply, out, duration_us = invoke(handler, loop, header, body)
        flush_output()
        sock.sendall(
            encode(
                reply, {"request_id": header.get("request_id", ""), "duration_us": duration_us}, out
            )
        )


def serve_concurrently(
    handler: Callable[..., Any], sock: socket.socket, stream: BinaryIO, workers: int
) -> None:
    """This thread reads INVOKE frames; `workers` threads run them (the agent sends at most that
    many at once) and send each reply whole, one at a time, as it is ready."""
    import queue
    import threading

    calls: queue.SimpleQueue[tuple[dict[str, Any], bytes]] = queue.SimpleQueue()
    send_lock = threading.Lock()
    loop = SharedLoop()

    def work() -> None:
        while True:
            header, body = calls.get()
            reply, out, duration_us = invoke(handler, loop, header, body)
            flush_output()
            frame = encode(
                reply, {"request_id": header.get("request_id", ""), "duration_us": duration_us}, out
            )
            with send_lock:
                sock.sendall(frame)

    for n in range(workers):
        threading.Thread(target=work, name=f"nimbus-call-{n}", daemon=True).start()
    while True:
        frame = read_frame(stream)
        if frame is None:
            return  # the agent closed the connection: the instance is being stopped
        kind, header, body = frame
        if kind != "INVOKE":
            raise SystemExit(f"nimbus runtime: unexpected frame {kind!r}")
        calls.put((header, body))


if __name__ == "__main__":
    main()
