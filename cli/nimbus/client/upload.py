"""Large code packages by the gRPC client-streaming `nimbus.api.v1.Functions/UploadCode`.

A JSON body carries the zip as base64 (a third larger, buffered whole by the gateway); this module
streams the raw bytes in chunks instead, over the same gateway host:port (h2c, or TLS for an
https endpoint) with the metadata `authorization: Bearer KEY`:

    from nimbus.client import Client
    from nimbus.client.upload import upload_function, upload_code

    c = Client()
    fn = upload_function(c, "big", "python3.11", "main.handler", zip_bytes, memory_mb=512,
                         progress=lambda sent, total: print(sent, "/", total))
    fn = upload_code(c, "big", new_zip_bytes)          # new code for an existing function
    # the same as methods: c.upload_function(...), c.upload_code(...)

The first message carries `create` (a CreateFunctionRequest with everything but the code) or
`update` (an UpdateFunctionCodeRequest with the name and expected_revision); the zip follows in
chunks of 256 KiB to 1 MiB. The answer is the function as REST returns it (proto3 JSON with
snake_case names, int64 as strings, zero values left out). A gRPC error becomes the same
`NimbusApiError` the REST client raises, with the HTTP status the gateway would have used; an
unreachable gateway is a `NimbusConnectionError`.

`chunk_size` overrides the chunk size (at most 1 MiB); `deadline_s` bounds the whole call (None, the
default, waits as long as the upload takes; Ctrl-C cancels it).

grpcio and protobuf are imported on the first upload only, so `nimbus.client` itself stays
stdlib-only; without them the upload raises `StreamingUnavailable`.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from nimbus.client.config import ClientConfig
from nimbus.client.errors import (
    GrpcCode,
    NimbusApiError,
    NimbusClientError,
    NimbusConnectionError,
    StreamingUnavailable,
)

if TYPE_CHECKING:
    from nimbus.client.client import Client

# Packages above this size go by the streaming upload in the CLI; smaller ones in the JSON body.
STREAM_THRESHOLD = 1024 * 1024
MIN_CHUNK_SIZE = 256 * 1024
MAX_CHUNK_SIZE = 1024 * 1024
METHOD = "/nimbus.api.v1.Functions/UploadCode"

# `progress(sent_bytes, total_bytes)`: called with 0 before the first chunk, then after each chunk
# is handed to the connection. It runs on gRPC's sending thread, not the caller's.
Progress = Callable[[int, int], None]

# The HTTP status the gateway uses for each gRPC code (Envoy's transcoder / grpc-gateway table).
HTTP_STATUS_BY_GRPC_CODE: dict[int, int] = {
    GrpcCode.OK: 200,
    GrpcCode.CANCELLED: 499,
    GrpcCode.UNKNOWN: 500,
    GrpcCode.INVALID_ARGUMENT: 400,
    GrpcCode.DEADLINE_EXCEEDED: 504,
    GrpcCode.NOT_FOUND: 404,
    GrpcCode.ALREADY_EXISTS: 409,
    GrpcCode.PERMISSION_DENIED: 403,
    GrpcCode.RESOURCE_EXHAUSTED: 429,
    GrpcCode.FAILED_PRECONDITION: 400,
    GrpcCode.ABORTED: 409,
    GrpcCode.OUT_OF_RANGE: 413,  # the package is too large
    GrpcCode.UNIMPLEMENTED: 501,
    GrpcCode.INTERNAL: 500,
    GrpcCode.UNAVAILABLE: 503,
    GrpcCode.DATA_LOSS: 500,
    GrpcCode.UNAUTHENTICATED: 401,
}


def chunk_size_for(total: int) -> int:
    """About a hundred chunks for a big package, each between 256 KiB and 1 MiB."""
    return max(MIN_CHUNK_SIZE, min(MAX_CHUNK_SIZE, -(-total // 100)))


def iter_chunks(data: bytes, chunk_size: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), chunk_size):
        yield view[start : start + chunk_size]


def grpc_target(endpoint: str) -> tuple[str, bool]:
    """(host:port, use TLS) for a gateway URL; gRPC ignores any path prefix of the endpoint."""
    parsed = urllib.parse.urlsplit(endpoint)
    tls = parsed.scheme == "https"
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if tls else 80)
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}", tls


def api_error_from_grpc(code: int, message: str, endpoint: str = "") -> NimbusClientError:
    """The SDK error for a gRPC status: a `NimbusApiError`, or a `NimbusConnectionError` when the
    channel never connected."""
    if code == GrpcCode.UNAVAILABLE and "failed to connect" in message.lower():
        refused = "refused" in message.lower()
        reason = "connection refused" if refused else message
        return NimbusConnectionError(endpoint, reason, refused=refused)
    status = HTTP_STATUS_BY_GRPC_CODE.get(code, 500)
    return NimbusApiError(status, code, message or f"gRPC status {code}")


def upload_function(
    target: Client | ClientConfig,
    name: str,
    runtime: str,
    handler: str,
    zip_bytes: bytes,
    *,
    memory_mb: int | None = None,
    timeout_s: int | None = None,
    env: Mapping[str, str] | None = None,
    description: str | None = None,
    max_concurrency: int | None = None,
    min_instances: int | None = None,
    instance_concurrency: int | None = None,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """Creates a function with its code streamed in chunks; returns the new function."""
    _, functions_pb2, _, _ = _modules()
    create = functions_pb2.CreateFunctionRequest(
        name=name,
        runtime=runtime,
        handler=handler,
        env=dict(env or {}),
        description=description or "",
    )
    for field, value in (
        ("memory_mb", memory_mb),
        ("timeout_s", timeout_s),
        ("max_concurrency", max_concurrency),
        ("min_instances", min_instances),
        ("instance_concurrency", instance_concurrency),
    ):
        if value is not None:
            setattr(create, field, value)  # proto3 `optional`: set means "given"
    first = functions_pb2.UploadCodeRequest(create=create)
    return _upload(
        target, first, zip_bytes, progress=progress, chunk_size=chunk_size, deadline_s=deadline_s
    )


def upload_code(
    target: Client | ClientConfig,
    name: str,
    zip_bytes: bytes,
    *,
    expected_revision: int = 0,
    progress: Progress | None = None,
    chunk_size: int | None = None,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """Replaces an existing function's code ($LATEST), streamed in chunks; returns the function.
    A non-zero `expected_revision` applies the change only at that revision (else 409)."""
    _, functions_pb2, _, _ = _modules()
    update = functions_pb2.UpdateFunctionCodeRequest(name=name, expected_revision=expected_revision)
    first = functions_pb2.UploadCodeRequest(update=update)
    return _upload(
        target, first, zip_bytes, progress=progress, chunk_size=chunk_size, deadline_s=deadline_s
    )


def _config_of(target: Client | ClientConfig) -> ClientConfig:
    return target if isinstance(target, ClientConfig) else target.config


def _upload(
    target: Client | ClientConfig,
    first: Any,
    zip_bytes: bytes,
    *,
    progress: Progress | None,
    chunk_size: int | None,
    deadline_s: float | None,
) -> dict[str, Any]:
    grpc, functions_pb2, functions_pb2_grpc, json_format = _modules()
    config = _config_of(target)
    total = len(zip_bytes)
    if chunk_size is not None and chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    size = min(chunk_size, MAX_CHUNK_SIZE) if chunk_size else chunk_size_for(total)

    def requests() -> Iterator[Any]:
        # The first message names the target only; the zip follows in chunk messages.
        if progress is not None:
            progress(0, total)
        yield first
        sent = 0
        for chunk in iter_chunks(zip_bytes, size):
            yield functions_pb2.UploadCodeRequest(chunk=bytes(chunk))
            sent += len(chunk)
            if progress is not None:
                progress(sent, total)

    address, tls = grpc_target(config.endpoint)
    options = [
        ("grpc.max_send_message_length", MAX_CHUNK_SIZE * 2),
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.primary_user_agent", "nimbus-python/0.1"),
    ]
    if tls:
        channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(), options=options)
    else:
        channel = grpc.insecure_channel(address, options=options)
    metadata = [("authorization", f"Bearer {config.api_key}")] if config.api_key else []
    try:
        stub = functions_pb2_grpc.FunctionsStub(channel)
        future = stub.UploadCode.future(requests(), metadata=metadata, timeout=deadline_s)
        try:
            reply = _wait(future)
        except grpc.RpcError as e:
            code = e.code() if hasattr(e, "code") else None
            details = e.details() if hasattr(e, "details") else str(e)
            raise api_error_from_grpc(
                code.value[0] if code is not None else GrpcCode.UNKNOWN,
                details or "",
                config.endpoint,
            ) from None
        except BaseException:  # Ctrl-C: stop sending instead of finishing in the background
            future.cancel()
            raise
    finally:
        channel.close()
    function: dict[str, Any] = json_format.MessageToDict(reply, preserving_proto_field_name=True)
    return function


def _wait(future: Any) -> Any:
    """future.result(), woken up now and then so Ctrl-C reaches the main thread."""
    done = threading.Event()
    future.add_done_callback(lambda _f: done.set())
    while not done.wait(0.2):
        pass
    return future.result()


def _modules() -> tuple[Any, Any, Any, Any]:
    try:
        import grpc
        from google.protobuf import json_format
        from nimbus.api.v1 import functions_pb2, functions_pb2_grpc
    except ImportError as e:
        raise StreamingUnavailable(
            f"the chunked upload needs grpcio, protobuf and the nimbus.api.v1 stubs ({e}); "
            "install grpcio and protobuf, or run `make proto` in a Nimbus checkout"
        ) from e
    return grpc, functions_pb2, functions_pb2_grpc, json_format
