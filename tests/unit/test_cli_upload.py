"""The chunked gRPC upload (nimbus.client.upload) and the CLI's progress display.

The SDK talks to a real in-process gRPC server that implements only `Functions/UploadCode` and
records what it received; the CLI's deploy runs against that server plus the stdlib HTTP fake of
test_cli_http (REST), with the SDK's gRPC target pointed at the gRPC server's port.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from nimbus.api.v1 import functions_pb2, functions_pb2_grpc
from nimbus.cli import output
from nimbus.cli.main import main
from nimbus.client import (
    Client,
    NimbusApiError,
    NimbusConnectionError,
    StreamingUnavailable,
    upload,
)
from nimbus.client.config import ClientConfig
from nimbus.client.upload import (
    api_error_from_grpc,
    chunk_size_for,
    grpc_target,
    upload_code,
    upload_function,
)

from tests.support.fakegateway import API_KEY, GatewayState

MiB = 1024 * 1024


@dataclass
class Received:
    metadata: dict[str, str] = field(default_factory=dict)
    first: Any = None
    first_chunk: bytes = b""
    chunks: list[int] = field(default_factory=list)
    data: bytes = b""


@dataclass
class UploadState:
    received: list[Received] = field(default_factory=list)
    abort: tuple[grpc.StatusCode, str] | None = None
    functions: dict[str, dict[str, Any]] | None = None  # the REST fake's functions, kept in step
    started: threading.Event = field(default_factory=threading.Event)
    release: threading.Event | None = None  # hold the call open until set


class Servicer(functions_pb2_grpc.FunctionsServicer):
    def __init__(self, state: UploadState) -> None:
        self.state = state

    def UploadCode(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:  # noqa: N802
        rec = Received(metadata={k: v for k, v in context.invocation_metadata()})
        self.state.received.append(rec)
        self.state.started.set()
        if self.state.release is not None:
            self.state.release.wait(10)
        if rec.metadata.get("authorization") != f"Bearer {API_KEY}":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid API key")
        parts: list[bytes] = []
        for i, msg in enumerate(request_iterator):
            if i == 0:
                rec.first = msg
                rec.first_chunk = msg.chunk
            else:
                assert msg.WhichOneof("target") is None
                rec.chunks.append(len(msg.chunk))
            parts.append(msg.chunk)
        rec.data = b"".join(parts)
        if self.state.abort is not None:
            context.abort(*self.state.abort)
        target = rec.first.WhichOneof("target")
        sha = hashlib.sha256(rec.data).hexdigest()
        if target == "create":
            c = rec.first.create
            fn = functions_pb2.Function(
                name=c.name,
                runtime=c.runtime,
                handler=c.handler,
                memory_mb=c.memory_mb if c.HasField("memory_mb") else 128,
                timeout_s=c.timeout_s if c.HasField("timeout_s") else 3,
                env=dict(c.env),
                description=c.description,
                namespace="default",
                code_sha256=sha,
                code_size=len(rec.data),
                revision=1,
            )
        else:
            u = rec.first.update
            if self.state.functions is not None and u.name not in self.state.functions:
                context.abort(grpc.StatusCode.NOT_FOUND, f"function {u.name} not found")
            fn = functions_pb2.Function(
                name=u.name,
                runtime="python3.11",
                handler="main.handler",
                code_sha256=sha,
                code_size=len(rec.data),
                revision=2,
            )
        if self.state.functions is not None:
            from google.protobuf import json_format

            self.state.functions[fn.name] = json_format.MessageToDict(
                fn, preserving_proto_field_name=True
            )
        return fn


@pytest.fixture
def grpc_server() -> Iterator[tuple[int, UploadState]]:
    state = UploadState()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4),
        options=[("grpc.max_receive_message_length", 8 * MiB)],
    )
    functions_pb2_grpc.add_FunctionsServicer_to_server(Servicer(state), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, state
    finally:
        if state.release is not None:
            state.release.set()
        server.stop(grace=None)


def config_for(port: int, api_key: str | None = API_KEY) -> ClientConfig:
    return ClientConfig(
        endpoint=f"http://127.0.0.1:{port}",
        api_key=api_key,
        endpoint_source="argument",
        api_key_source="argument",
    )


# -- the SDK ------------------------------------------------------------------------------------


def test_upload_function_streams_chunks(grpc_server: tuple[int, UploadState]) -> None:
    port, state = grpc_server
    data = os.urandom(3 * MiB + 12345)
    calls: list[tuple[int, int]] = []
    fn = upload_function(
        config_for(port),
        "big",
        "python3.11",
        "main.handler",
        data,
        memory_mb=256,
        env={"A": "1"},
        description="d",
        progress=lambda s, t: calls.append((s, t)),
    )
    rec = state.received[0]
    assert rec.metadata["authorization"] == f"Bearer {API_KEY}"
    create = rec.first.create
    assert (
        rec.first.WhichOneof("target") == "create" and rec.first_chunk == b""
    )  # the target alone first
    assert (create.name, create.runtime, create.handler, create.memory_mb, dict(create.env)) == (
        "big",
        "python3.11",
        "main.handler",
        256,
        {"A": "1"},
    )
    assert not create.HasField("timeout_s") and not create.HasField(
        "min_instances"
    )  # unset stays unset
    assert not create.HasField("code")
    assert rec.data == data
    assert all(256 * 1024 <= n <= MiB for n in rec.chunks[:-1]) and 0 < rec.chunks[-1] <= MiB
    # proto3 JSON, as REST answers: snake_case, int64 as strings.
    assert fn["name"] == "big" and fn["memory_mb"] == 256 and fn["code_size"] == str(len(data))
    assert fn["code_sha256"] == hashlib.sha256(data).hexdigest()
    assert calls[0] == (0, len(data)) and calls[-1] == (len(data), len(data))
    assert [s for s, _ in calls] == sorted(s for s, _ in calls)


def test_upload_code_through_the_client(grpc_server: tuple[int, UploadState]) -> None:
    port, state = grpc_server
    data = os.urandom(MiB + 1)
    with Client(endpoint=f"http://127.0.0.1:{port}", api_key=API_KEY, env={}, cwd=Path("/")) as c:
        fn = c.upload_code("big", data, chunk_size=300 * 1024)
    rec = state.received[0]
    assert rec.first.WhichOneof("target") == "update"
    assert (rec.first.update.name, rec.first.update.expected_revision) == ("big", 0)
    assert rec.chunks == [300 * 1024] * 3 + [len(data) - 900 * 1024]
    assert fn["revision"] == "2" and rec.data == data


def test_upload_errors_become_api_errors(grpc_server: tuple[int, UploadState]) -> None:
    port, state = grpc_server
    state.abort = (grpc.StatusCode.OUT_OF_RANGE, "the package is 60 MB; the limit is 50 MB")
    with pytest.raises(NimbusApiError) as exc:
        upload_code(config_for(port), "big", b"x" * 1000)
    assert (exc.value.status, exc.value.code, exc.value.message) == (
        413,
        11,
        "the package is 60 MB; the limit is 50 MB",
    )
    assert str(exc.value) == "the package is 60 MB; the limit is 50 MB (HTTP 413)"
    state.abort = None
    with pytest.raises(NimbusApiError) as exc:
        upload_code(config_for(port, api_key="wrong"), "big", b"x")
    assert (exc.value.status, exc.value.code_name) == (401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ALREADY_EXISTS, 409),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.UNAUTHENTICATED, 401),
        (grpc.StatusCode.PERMISSION_DENIED, 403),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.OUT_OF_RANGE, 413),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.INTERNAL, 500),
    ],
)
def test_grpc_code_to_http_status(code: grpc.StatusCode, status: int) -> None:
    err = api_error_from_grpc(code.value[0], "msg")
    assert isinstance(err, NimbusApiError)
    assert (err.status, err.code, err.message) == (status, code.value[0], "msg")


def test_unreachable_gateway_is_a_connection_error() -> None:
    from test_cli_http import free_port

    endpoint = f"http://127.0.0.1:{free_port()}"
    cfg = ClientConfig(
        endpoint=endpoint, api_key="k", endpoint_source="argument", api_key_source="argument"
    )
    with pytest.raises(NimbusConnectionError) as exc:
        upload_code(cfg, "f", b"x", deadline_s=5)
    assert exc.value.refused and exc.value.endpoint == endpoint


def test_grpc_target() -> None:
    assert grpc_target("http://127.0.0.1:8080") == ("127.0.0.1:8080", False)
    assert grpc_target("http://gw.example/prefix") == ("gw.example:80", False)
    assert grpc_target("https://gw.example") == ("gw.example:443", True)
    assert grpc_target("http://[::1]:9000") == ("[::1]:9000", False)


def test_chunk_size_bounds() -> None:
    assert chunk_size_for(1) == 256 * 1024
    assert chunk_size_for(2 * MiB) == 256 * 1024
    assert chunk_size_for(50 * MiB) == 512 * 1024
    assert chunk_size_for(250 * MiB) == MiB


def test_missing_grpc_is_streaming_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_grpc(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "grpc" or name.startswith("grpc."):
            raise ImportError("No module named 'grpc'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_grpc)
    with pytest.raises(StreamingUnavailable, match="grpcio"):
        upload_code(config_for(1), "f", b"x")


# -- the progress display -----------------------------------------------------------------------


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_bar_text() -> None:
    line = output.progress_bar_text("uploading big", 768 * 1024, 1536 * 1024, 0.5, width=100)
    assert line.startswith("uploading big  [")
    assert (
        "768.0 KiB / 1.5 MiB" in line
        and " 50%" in line
        and "1.5 MiB/s" in line
        and "ETA 1s" in line
    )
    bar = line[line.index("[") + 1 : line.index("]")]
    assert bar.count("=") + bar.count(">") == len(bar) // 2 and bar.rstrip().endswith(">")
    done = output.progress_bar_text("uploading big", 10, 10, 1.0, width=100)
    assert "100%" in done and "waiting for the server" in done and "[" + "=" * 10 in done
    start = output.progress_bar_text("uploading big", 0, 10, 0.0, width=100)
    assert start.endswith("0 B / 10 B    0%") and "[ " in start  # no rate nor ETA yet
    assert len(output.progress_bar_text("uploading " + "x" * 200, 5, 10, 1.0, width=60)) == 59


def test_progress_on_a_terminal_redraws_and_throttles() -> None:
    err, clock = Tty(), Clock()
    con = output.Console(io.StringIO(), err, {"NO_COLOR": "1"})
    p = con.upload_progress("uploading big", clock=clock, width=80)
    p(0, 4 * MiB)
    clock.now += 0.01
    p(MiB, 4 * MiB)  # within 0.1 s of the last draw: skipped
    clock.now += 0.5
    p(2 * MiB, 4 * MiB)
    clock.now += 0.5
    p(4 * MiB, 4 * MiB)  # the end is always drawn
    draws = err.getvalue().split("\r\x1b[K")[1:]
    assert len(draws) == 3
    assert " 50%" in draws[1] and "3.9 MiB/s" in draws[1] and "ETA 1s" in draws[1]
    assert "100%" in draws[2]
    p.close()
    assert "100%  waiting for the server\r" in err.getvalue()  # fits 80 columns
    assert err.getvalue().endswith("\r\x1b[Kuploaded 4.0 MiB in 1.0 s (4.0 MiB/s)\n")
    p(1, 1)  # a late report after close is ignored
    assert err.getvalue().endswith("(4.0 MiB/s)\n")


def test_progress_when_piped_prints_plain_lines() -> None:
    err, clock = io.StringIO(), Clock()
    con = output.Console(io.StringIO(), err, {})
    p = con.upload_progress("uploading big", clock=clock)
    total = 100 * 1024
    for sent in range(0, total + 1, 1024):  # a report every 1 %
        p(sent, total)
        clock.now += 0.1
    p.close()
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue() and "\x1b" not in err.getvalue()
    assert [line.split("(")[1].split(")")[0] for line in lines] == [
        f"{n}%" for n in range(10, 101, 10)
    ]
    assert lines[-1].startswith("uploading big: 100.0 KiB / 100.0 KiB (100%), ")


def test_progress_close_after_failure_leaves_no_summary() -> None:
    err = Tty()
    p = output.Console(io.StringIO(), err, {}).upload_progress("up", clock=Clock())
    p(0, 10)
    p.close(done=False)
    assert err.getvalue().endswith("\r\x1b[K") and "uploaded" not in err.getvalue()


# -- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def both(
    gateway: tuple[str, GatewayState],
    grpc_server: tuple[int, UploadState],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[tuple[str, GatewayState], UploadState]:
    """REST on the HTTP fake, gRPC on the gRPC fake (the real gateway serves both on one port)."""
    port, state = grpc_server
    state.functions = gateway[1].functions
    monkeypatch.setattr(upload, "grpc_target", lambda endpoint: (f"127.0.0.1:{port}", False))
    return gateway, state


def big_src(tmp_path: Path, size: int = 1536 * 1024) -> Path:
    d = tmp_path / "big"
    d.mkdir(exist_ok=True)
    (d / "main.py").write_text("def handler(event, context):\n    return {'ok': True}\n")
    (d / "blob.bin").write_bytes(os.urandom(size))  # incompressible: the zip stays over 1 MiB
    return d


def run(
    gw: tuple[str, GatewayState], *argv: str, stderr: io.StringIO | None = None
) -> tuple[int, str, str]:
    out, err = io.StringIO(), stderr if stderr is not None else io.StringIO()
    code = main(
        ["--endpoint", gw[0], "--api-key", API_KEY, *argv],
        env={},
        cwd=Path("/"),
        stdin=io.BytesIO(),
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_cli_deploy_big_package_streams(
    both: tuple[tuple[str, GatewayState], UploadState], tmp_path: Path
) -> None:
    gw, state = both
    src = big_src(tmp_path)
    code, out, err = run(
        gw,
        "deploy",
        "big",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
        "--memory",
        "512",
    )
    assert code == 0, err
    assert out.splitlines()[0] == "created function big"
    assert gw[1].paths() == ["GET /v1/functions/big"]  # no JSON body with the code
    rec = state.received[0]
    assert rec.first.create.memory_mb == 512 and rec.data[:2] == b"PK" and len(rec.data) > MiB
    lines = err.splitlines()  # piped: plain lines, no control characters
    assert lines[0].startswith("uploading 1.5 MiB to big over gRPC in 7 chunks")
    assert lines[-1].startswith("uploading big: 1.5 MiB / 1.5 MiB (100%)")
    assert "\r" not in err

    # New code for the existing function: an `update` stream; the same code again: nothing sent.
    (src / "blob.bin").write_bytes(os.urandom(1200 * 1024))
    code, out, err = run(gw, "deploy", "big", "--src", str(src))
    assert code == 0 and out.startswith("updated function big\n"), err
    assert state.received[1].first.WhichOneof("target") == "update"
    assert state.received[1].first.update.name == "big"
    code, out, err = run(gw, "deploy", "big", "--src", str(src))
    assert (
        out.startswith("function big is up to date (same code, not uploaded)")
        and len(state.received) == 2
    )


def test_cli_deploy_from_a_zip_file_on_a_terminal(
    both: tuple[tuple[str, GatewayState], UploadState], tmp_path: Path
) -> None:
    gw, state = both
    from nimbus.client import zip_directory

    zip_path = tmp_path / "code.zip"
    zip_path.write_bytes(zip_directory(big_src(tmp_path, 2 * MiB)))
    err = Tty()
    code, out, _ = run(
        gw,
        "deploy",
        "big",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(zip_path),
        stderr=err,
    )
    assert code == 0 and state.received[0].data == zip_path.read_bytes()
    text = err.getvalue()
    assert "uploading big  [" in text and "100%" in text
    assert text.splitlines()[-1].split("\x1b[K")[-1].startswith("uploaded 2.0 MiB in ")


def test_cli_small_package_keeps_the_json_body(
    both: tuple[tuple[str, GatewayState], UploadState], tmp_path: Path
) -> None:
    gw, state = both
    src = big_src(tmp_path, 1000)
    code, _, err = run(
        gw,
        "deploy",
        "small",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
    )
    assert (
        (code, err) == (0, "") and gw[1].paths()[-1] == "POST /v1/functions" and not state.received
    )
    # --upload grpc streams even a small package
    (src / "main.py").write_text("def handler(event, context):\n    return 2\n")
    code, _, err = run(gw, "deploy", "small", "--src", str(src), "--upload", "grpc")
    assert code == 0, err
    assert state.received[0].first.WhichOneof("target") == "update"


def test_cli_stream_error_exits_1(
    both: tuple[tuple[str, GatewayState], UploadState], tmp_path: Path
) -> None:
    gw, state = both
    state.abort = (grpc.StatusCode.INVALID_ARGUMENT, "code: the handler file main.py is missing")
    code, out, err = run(
        gw,
        "deploy",
        "big",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(big_src(tmp_path)),
    )
    assert (code, out) == (1, "")
    assert (
        err.splitlines()[-1]
        == "nimbus: error: code: the handler file main.py is missing (HTTP 400)"
    )


def test_cli_falls_back_to_json_without_grpc(
    gateway: tuple[str, GatewayState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def unavailable() -> Any:
        raise StreamingUnavailable("the chunked upload needs grpcio")

    monkeypatch.setattr(upload, "_modules", unavailable)
    src = big_src(tmp_path)
    code, out, err = run(
        gateway,
        "deploy",
        "big",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
    )
    assert code == 0, err
    assert (
        "warning: the chunked upload needs grpcio; sending the package in the JSON body instead"
        in err
    )
    assert gateway[1].paths() == ["GET /v1/functions/big", "POST /v1/functions"]
    # forced gRPC does not fall back
    code, _, err = run(gateway, "deploy", "big", "--src", str(src), "--upload", "grpc", "--force")
    assert code == 1 and "nimbus: error: the chunked upload needs grpcio" in err


def test_cli_falls_back_to_json_when_the_gateway_lacks_upload(
    gateway: tuple[str, GatewayState],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))  # no services: UNIMPLEMENTED
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.setattr(upload, "grpc_target", lambda endpoint: (f"127.0.0.1:{port}", False))
        code, out, err = run(
            gateway,
            "deploy",
            "big",
            "--runtime",
            "python3.11",
            "--handler",
            "main.handler",
            "--src",
            str(big_src(tmp_path)),
        )
    finally:
        server.stop(grace=None)
    assert code == 0, err
    assert "does not offer the streaming upload" in err and "JSON body instead" in err
    assert gateway[1].paths()[-1] == "POST /v1/functions"


def test_ctrl_c_cancels_the_stream(
    grpc_server: tuple[int, UploadState], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, state = grpc_server
    state.release = threading.Event()  # the server sits on the call
    cancelled: list[bool] = []
    real_wait = upload._wait

    def interrupted(future: Any) -> Any:
        state.started.wait(5)
        real_cancel = future.cancel
        future.cancel = lambda: cancelled.append(real_cancel()) or True  # type: ignore[method-assign]
        raise KeyboardInterrupt

    monkeypatch.setattr(upload, "_wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        upload_code(config_for(port), "f", b"x" * 10)
    assert cancelled == [True]
    monkeypatch.setattr(upload, "_wait", real_wait)
