"""The telemetry interceptor and the metrics endpoint on real loopback sockets, in-process:
status codes counted as the client sees them, the caller's trace carried by rpc.call, and
GET /metrics served by nimbus.common.metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2
from nimbus.common import metrics, mtls, rpc, tracing
from nimbus.common.errors import Throttled
from nimbus.common.interceptors import ErrorInterceptor, TelemetryInterceptor
from nimbus.common.service import new_server
from prometheus_client import REGISTRY

from tests.support import free_port

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(60)]

SERVICE = "nimbus.test.Telemetry"
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class Handlers:
    def __init__(self) -> None:
        self.seen_traces: list[str] = []

    async def ok(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        self.seen_traces.append(tracing.current_trace_id())
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    async def throttled(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        raise Throttled("too many")


@pytest_asyncio.fixture(loop_scope="session")
async def server() -> AsyncIterator[tuple[grpc.aio.Channel, Handlers]]:
    handlers = Handlers()
    mtls.reset_for_tests(None)  # a bare server of this test's own, without the cluster's PKI
    srv, _ = new_server([TelemetryInterceptor(), ErrorInterceptor()])

    def method(fn: Any) -> grpc.RpcMethodHandler:
        return grpc.unary_unary_rpc_method_handler(
            fn,
            health_pb2.HealthCheckRequest.FromString,
            health_pb2.HealthCheckResponse.SerializeToString,
        )

    srv.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE, {"Ok": method(handlers.ok), "Throttled": method(handlers.throttled)}
            ),
        )
    )
    port = srv.add_insecure_port("127.0.0.1:0")
    await srv.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, handlers
    finally:
        await channel.close()
        await srv.stop(0)


def _stub(channel: grpc.aio.Channel, name: str) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/{name}",
        health_pb2.HealthCheckRequest.SerializeToString,
        health_pb2.HealthCheckResponse.FromString,
    )


def _count(method: str, code: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "nimbus_grpc_server_requests_total", {"method": f"{SERVICE}/{method}", "code": code}
        )
        or 0.0
    )


async def test_calls_are_counted_by_code_and_carry_the_trace(
    server: tuple[grpc.aio.Channel, Handlers],
) -> None:
    channel, handlers = server
    ok_before, throttled_before = _count("Ok", "OK"), _count("Throttled", "RESOURCE_EXHAUSTED")
    token, span = tracing.start("client", TP)
    try:
        await rpc.call(_stub(channel, "Ok"), health_pb2.HealthCheckRequest(), timeout_s=5)
        with pytest.raises(Throttled):
            await rpc.call(
                _stub(channel, "Throttled"), health_pb2.HealthCheckRequest(), timeout_s=5
            )
    finally:
        tracing.finish(token, span)
    # Outside any request the server starts a trace of its own.
    await rpc.call(_stub(channel, "Ok"), health_pb2.HealthCheckRequest(), timeout_s=5)
    assert handlers.seen_traces[0] == "0af7651916cd43dd8448eb211c80319c"
    assert len(handlers.seen_traces[1]) == 32 and handlers.seen_traces[1] != handlers.seen_traces[0]
    assert _count("Ok", "OK") == ok_before + 2
    assert _count("Throttled", "RESOURCE_EXHAUSTED") == throttled_before + 1
    latency = REGISTRY.get_sample_value(
        "nimbus_grpc_server_handling_seconds_count", {"method": f"{SERVICE}/Ok"}
    )
    assert latency is not None and latency >= 2


async def _get(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def test_metrics_endpoint_serves_the_process_registry() -> None:
    port = free_port()
    task = asyncio.create_task(metrics.serve_metrics(f"127.0.0.1:{port}"))
    try:
        reply = b""
        for _ in range(50):  # until the listener is up
            with contextlib.suppress(ConnectionError):
                reply = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                break
            await asyncio.sleep(0.05)
        head, _, body = reply.partition(b"\r\n\r\n")
        assert head.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")) and b"text/plain" in head
        assert b"# TYPE nimbus_grpc_server_requests_total counter" in body
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # Cancelled, it let its port go: nothing answers there any more.
    with pytest.raises(ConnectionError):
        await _get(port, b"GET /metrics HTTP/1.1\r\n\r\n")
