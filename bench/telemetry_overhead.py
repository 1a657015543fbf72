"""µs per call of the telemetry code on the warm invoke path, without and with span export.

    .venv/bin/python -m bench.telemetry_overhead

Times, with timeit in one process, each piece the warm path runs per call: the server
interceptor's span and metrics (once per hop: invoker, node-agent), the invoker's per-function
series and dispatch span, the traceparent put on the outgoing call, the node-agent's instance-call
span, and what a log line pays for its trace_id. "export" swaps in an SDK tracer with a
BatchSpanProcessor whose exporter drops the spans, so the cost measured is the SDK's, not the
network's. Then a real gRPC round trip on loopback with and without the interceptor.
"""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
import timeit
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nimbus.common import logs, metrics, mtls, rpc, tracing
from nimbus.common.interceptors import ErrorInterceptor, TelemetryInterceptor
from nimbus.common.service import new_server
from nimbus.invoker import telemetry

N = 20000
TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def per_call_us(fn: Callable[[], object], n: int = N) -> float:
    return min(timeit.repeat(fn, number=n, repeat=3)) / n * 1e6


def pieces() -> dict[str, float]:
    series = metrics.MethodSeries("bench/Method")

    def interceptor_work() -> None:
        token, span = tracing.start("bench/Method", TP)
        t0 = time.perf_counter()
        series.observe("OK", time.perf_counter() - t0)
        tracing.finish(token, span, None)

    def invoker_work() -> None:
        logs.bind_request("3f1c0a52-8f7e-4a43-9d0e-0c1b2a3d4e5f", "default", "fn")
        span = tracing.current_span()
        if span.is_recording():
            span.set_attributes(
                {
                    "nimbus.namespace": "default",
                    "nimbus.function": "fn",
                    "nimbus.version": "$LATEST",
                }
            )
        fn = telemetry.function_series("default", "fn", "$LATEST")
        with tracing.span("invoker.dispatch"):
            pass
        fn.concurrent.inc()
        fn.concurrent.dec()
        fn.completed("", 120, False, 0)
        tracing.current_trace_id()  # the x-nimbus-trace-id header

    def outgoing() -> None:
        tracing.with_traceparent(())

    def node_work() -> None:
        logs.request_id_var.set("3f1c0a52-8f7e-4a43-9d0e-0c1b2a3d4e5f")
        with tracing.span("instance.call"):
            pass

    out: dict[str, float] = {"interceptor (per hop)": per_call_us(interceptor_work)}
    token, span = tracing.start("bench/Method", TP)
    try:
        out["invoker core (per call)"] = per_call_us(invoker_work)
        out["traceparent on an outgoing call"] = per_call_us(outgoing)
        out["node-agent (per call)"] = per_call_us(node_work)
        record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
        formatter = logs.JsonFormatter()
        out["trace_id in one log line"] = per_call_us(
            lambda: tracing.current_span().get_span_context().trace_id, N
        )
        out["one whole JSON log line (for scale)"] = per_call_us(
            lambda: formatter.format(record), N // 4
        )
    finally:
        tracing.finish(token, span)
    return out


def export_on() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    class Drop(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(BatchSpanProcessor(Drop()))
    tracing._provider = provider
    tracing._tracer = provider.get_tracer("bench")


class _Health(health_pb2_grpc.HealthServicer):
    async def Check(self, request: Any, context: Any) -> health_pb2.HealthCheckResponse:
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


async def round_trip_us(interceptors: list[grpc.aio.ServerInterceptor], calls: int = 3000) -> float:
    """p50 of a unary call through a real server (a Check on a service named as no health one)."""
    mtls.reset_for_tests(None)  # the interceptors' cost alone, on a bare plaintext server
    server, _ = new_server(interceptors)
    generic = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Check": grpc.unary_unary_rpc_method_handler(
                _Health().Check,
                health_pb2.HealthCheckRequest.FromString,
                health_pb2.HealthCheckResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((generic,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            call = ch.unary_unary(
                "/bench.Echo/Check",
                health_pb2.HealthCheckRequest.SerializeToString,
                health_pb2.HealthCheckResponse.FromString,
            )
            samples = []
            for i in range(calls):
                t0 = time.perf_counter()
                await rpc.call(call, health_pb2.HealthCheckRequest(), timeout_s=5)
                if i >= calls // 10:
                    samples.append(time.perf_counter() - t0)
            return statistics.median(samples) * 1e6
    finally:
        await server.stop(0)


async def round_trips() -> dict[str, float]:
    out = {}
    for _ in range(2):  # interleaved, the machine is shared
        out["bare"] = min(out.get("bare", 1e9), await round_trip_us([ErrorInterceptor()]))
        out["telemetry"] = min(
            out.get("telemetry", 1e9),
            await round_trip_us([TelemetryInterceptor(), ErrorInterceptor()]),
        )
    return out


def main() -> None:
    result = {"no export": pieces(), "round trip p50 us, no export": asyncio.run(round_trips())}
    export_on()
    result["export (SDK spans, dropped)"] = pieces()
    result["round trip p50 us, export"] = asyncio.run(round_trips())
    print(
        json.dumps({k: {n: round(v, 2) for n, v in d.items()} for k, d in result.items()}, indent=2)
    )


if __name__ == "__main__":
    main()
