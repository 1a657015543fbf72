"""Following a function's log live, by the gRPC server-streaming `nimbus.api.v1.Functions/TailLogs`.

Over the gateway's host:port (h2c, or TLS for an https endpoint), like the streaming upload:

    from nimbus.client import Client
    from nimbus.client.tail import follow_logs

    for line in follow_logs(Client(), "hello"):       # until the function is deleted or Ctrl-C
        print(line["timestamp"], line.get("request_id", ""), line["stream"], line["message"])

Each line is the LogLine as REST returns it (snake_case keys; empty fields left out). A stream the
server or the network ended early (an api replica restarting, UNAVAILABLE, a reset) is opened
again from the last line's timestamp, and the lines of that millisecond already yielded are not
yielded twice; `on_reconnect(error_text)` is told each time. The generator ends when the function
is deleted; any other API error raises `NimbusApiError`. grpcio is imported on first use only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from nimbus.client.config import ClientConfig
from nimbus.client.errors import StreamingUnavailable
from nimbus.client.upload import api_error_from_grpc, grpc_target

if TYPE_CHECKING:
    from nimbus.client.client import Client

METHOD = "/nimbus.api.v1.Functions/TailLogs"
# gRPC codes after which the tail is opened again: UNAVAILABLE, INTERNAL (a reset stream),
# UNKNOWN, DEADLINE_EXCEEDED (a proxy's route timeout), CANCELLED by a proxy.
RETRY_CODES = frozenset({14, 13, 2, 4, 1})
MAX_BACKOFF_S = 5.0


def line_key(line: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(line.get("timestamp", "")),
        str(line.get("request_id", "")),
        str(line.get("stream", "")),
        str(line.get("message", "")),
    )


class Resume:
    """Where a reopened tail starts and which lines it must not repeat. Pure."""

    def __init__(self, since: str = "") -> None:
        self.since = since
        self._at_since: set[tuple[str, str, str, str]] = set()

    def admit(self, line: dict[str, Any]) -> bool:
        """Whether to yield the line (False for one already yielded before a reconnect)."""
        key = line_key(line)
        ts = key[0]
        if ts < self.since or key in self._at_since:
            return False
        if ts > self.since:
            self.since, self._at_since = ts, set()
        self._at_since.add(key)
        return True


def follow_logs(
    target: Client | ClientConfig,
    name: str,
    *,
    request_id: str = "",
    since: str = "",
    on_reconnect: Callable[[str], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[dict[str, Any]]:
    grpc, functions_pb2, functions_pb2_grpc, json_format = _modules()
    config = target if isinstance(target, ClientConfig) else target.config
    address, tls = grpc_target(config.endpoint)
    options = [
        ("grpc.max_receive_message_length", 16 * 1024 * 1024),
        ("grpc.primary_user_agent", "nimbus-python/0.1"),
        # A quiet function sends nothing for minutes: pings keep NATs and proxies from dropping us.
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]
    metadata = [("authorization", f"Bearer {config.api_key}")] if config.api_key else []
    resume = Resume(since)
    backoff = 0.0
    while True:
        if tls:
            channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(), options=options)
        else:
            channel = grpc.insecure_channel(address, options=options)
        call = None
        try:
            stub = functions_pb2_grpc.FunctionsStub(channel)
            request = functions_pb2.TailLogsRequest(
                name=name, request_id=request_id, since=resume.since
            )
            call = stub.TailLogs(request, metadata=metadata)
            for message in call:
                line = json_format.MessageToDict(message, preserving_proto_field_name=True)
                if resume.admit(line):
                    backoff = 0.0
                    yield line
            return  # the server ended the tail: the function was deleted
        except grpc.RpcError as e:
            code = e.code().value[0] if e.code() is not None else 2
            details = e.details() or ""
            if code not in RETRY_CODES:
                raise api_error_from_grpc(code, details, config.endpoint) from None
            if on_reconnect is not None:
                on_reconnect(details or f"gRPC status {code}")
        finally:
            if call is not None:
                call.cancel()
            channel.close()
        backoff = min(max(backoff * 2, 0.5), MAX_BACKOFF_S)
        sleep(backoff)


def _modules() -> tuple[Any, Any, Any, Any]:
    try:
        import grpc
        from google.protobuf import json_format
        from nimbus.api.v1 import functions_pb2, functions_pb2_grpc
    except ImportError as e:
        raise StreamingUnavailable(
            f"following logs needs grpcio, protobuf and the nimbus.api.v1 stubs ({e}); "
            "install grpcio and protobuf, or run `make proto` in a Nimbus checkout"
        ) from e
    return grpc, functions_pb2, functions_pb2_grpc, json_format
