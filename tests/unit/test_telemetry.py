"""Pure helpers of metrics, traces and trace-carrying logs: nimbus.common.{metrics,tracing,logs}."""

from __future__ import annotations

import json
import logging

import pytest
from nimbus.common import logs, metrics, tracing
from nimbus.common.config import CommonConfig, ConfigError
from nimbus.common.model import InstanceRecord
from nimbus.common.registry import ServiceEndpoint
from nimbus.invoker import telemetry as invoker_telemetry
from nimbus.scheduler.telemetry import instance_counts
from prometheus_client import CollectorRegistry, Counter

TP = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize(
    ("value", "trace_id", "span_id", "sampled"),
    [
        (TP, 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True),
        (TP[:-2] + "00", 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False),
        # A future version may append fields; version 00 may not.
        ("01" + TP[2:] + "-extra", 0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, True),
    ],
)
def test_parse_traceparent(value: str, trace_id: int, span_id: int, sampled: bool) -> None:
    ctx = tracing.parse_traceparent(value)
    assert ctx is not None
    assert (ctx.trace_id, ctx.span_id, ctx.trace_flags.sampled, ctx.is_remote) == (
        trace_id,
        span_id,
        sampled,
        True,
    )


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "garbage",
        TP[:-1],
        TP + "-x",
        "ff" + TP[2:],  # version ff is invalid
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",  # all-zero span id
        "00-0af7651916cd43dd8448eb211c80319z-b7ad6b7169203331-01",  # not hex
        "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ],
)
def test_parse_traceparent_rejects(value: str | None) -> None:
    assert tracing.parse_traceparent(value) is None


def test_traceparent_round_trip() -> None:
    ctx = tracing.parse_traceparent(TP)
    assert ctx is not None and tracing.format_traceparent(ctx) == TP
    fresh = tracing.new_span_context()
    assert fresh.trace_id and fresh.span_id and not fresh.trace_flags.sampled
    assert tracing.parse_traceparent(tracing.format_traceparent(fresh)) is not None


def test_without_export_a_request_still_carries_a_trace_id() -> None:
    assert not tracing.exporting()
    assert tracing.current_trace_id() == "" and tracing.with_traceparent((("a", "b"),)) == (
        ("a", "b"),
    )
    token, span = tracing.start("svc/Method", TP)
    try:
        assert not span.is_recording()
        assert tracing.current_trace_id() == "0af7651916cd43dd8448eb211c80319c"
        # A child span costs nothing and leaves the request's trace current.
        with tracing.span("child") as child:
            assert not child.is_recording()
            assert tracing.current_trace_id() == "0af7651916cd43dd8448eb211c80319c"
        out = dict(tracing.with_traceparent((("a", "b"),)))
        assert (
            out["a"] == "b"
            and out[tracing.TRACEPARENT].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        )
        headers: dict[str, str] = {}
        tracing.inject(headers)
        assert headers[tracing.TRACEPARENT] == out[tracing.TRACEPARENT]
    finally:
        tracing.finish(token, span)
    assert tracing.current_trace_id() == ""
    token, span = tracing.start("svc/Method", None)
    try:
        first = tracing.current_trace_id()
        assert len(first) == 32 and first != "0" * 32
    finally:
        tracing.finish(token, span)


def test_continued_restores_the_context_on_error() -> None:
    with pytest.raises(RuntimeError):
        with tracing.continued("async.run", TP):
            assert tracing.current_trace_id().startswith("0af76519")
            raise RuntimeError("boom")
    assert tracing.current_trace_id() == ""


def test_tracing_config() -> None:
    cfg = tracing.TracingConfig.from_env({}, "invoker", "invoker-1")
    assert (cfg.endpoint, cfg.service_name, cfg.replica, cfg.schedule_delay_ms) == (
        "",
        "invoker",
        "invoker-1",
        5000,
    )
    cfg = tracing.TracingConfig.from_env(
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "OTEL_SERVICE_NAME": "edge",
        },
        "invoker",
        "invoker-1",
    )
    assert (cfg.endpoint, cfg.service_name, cfg.schedule_delay_ms) == (
        "http://127.0.0.1:4317",
        "edge",
        100,
    )
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_ENDPOINT"):
        tracing.TracingConfig.from_env(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "127.0.0.1:4317"}, "invoker", "i"
        )
    with pytest.raises(ConfigError, match="OTEL_BSP_SCHEDULE_DELAY"):
        tracing.TracingConfig.from_env({"OTEL_BSP_SCHEDULE_DELAY": "soon"}, "invoker", "i")


def test_log_lines_carry_the_trace_and_request() -> None:
    formatter = logs.JsonFormatter()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    assert "trace_id" not in json.loads(formatter.format(record))
    token, span = tracing.start("svc/Method", TP)
    try:
        logs.bind_request("req-1", "ns", "fn")
        line = json.loads(formatter.format(record))
    finally:
        tracing.finish(token, span)
        logs.request_id_var.set("")
        logs.namespace_var.set("")
        logs.function_var.set("")
    assert (line["trace_id"], line["request_id"], line["namespace"], line["function"]) == (
        "0af7651916cd43dd8448eb211c80319c",
        "req-1",
        "ns",
        "fn",
    )


def test_children_bind_once_and_overflow() -> None:
    made: list[tuple[str, str]] = []

    def make(key: tuple[str, str]) -> str:
        made.append(key)
        return "/".join(key)

    children = metrics.Children(make, ("_other", "_other"), limit=2)
    assert children.get(("a", "1")) == "a/1" and children.get(("a", "1")) == "a/1"
    assert children.get(("b", "1")) == "b/1"
    # Past the limit every new key shares one overflow entry.
    assert (
        children.get(("c", "1")) == "_other/_other" and children.get(("d", "1")) == "_other/_other"
    )
    assert made == [("a", "1"), ("b", "1"), ("_other", "_other")]
    assert children.get(("a", "1")) == "a/1" and len(children) == 3


def test_render_text_format() -> None:
    registry = CollectorRegistry()
    Counter("demo_total", "d", ["k"], registry=registry).labels("v").inc(2)
    assert b'demo_total{k="v"} 2.0' in metrics.render(registry)


def test_common_config_metrics_addr() -> None:
    assert CommonConfig.from_env({}, "api").metrics_addr == ""
    assert (
        CommonConfig.from_env({"NIMBUS_METRICS_ADDR": "127.0.0.1:9464"}, "api").metrics_addr
        == "127.0.0.1:9464"
    )
    with pytest.raises(ConfigError, match="NIMBUS_METRICS_ADDR"):
        CommonConfig.from_env({"NIMBUS_METRICS_ADDR": "9464"}, "api")


def test_registry_record_metrics_address() -> None:
    record = ServiceEndpoint(
        "invoker", "invoker-1", "127.0.0.1:1", ("v1",), metrics_address="127.0.0.1:2"
    )
    assert ServiceEndpoint.from_json(record.to_json()) == record
    # A record written before the field existed still loads.
    old = json.dumps({"service": "api", "replica": "api-1", "address": "127.0.0.1:3"})
    assert ServiceEndpoint.from_json(old).metrics_address == ""


def _value(name: str, labels: dict[str, str]) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_function_series_counts_each_outcome() -> None:
    fn = {"namespace": "unit-ns", "function": "unit-fn", "version": "$LATEST"}
    series = invoker_telemetry.function_series("unit-ns", "unit-fn", "$LATEST")
    assert invoker_telemetry.function_series("unit-ns", "unit-fn", "$LATEST") is series
    before = {
        o: _value("nimbus_invocations_total", {**fn, "outcome": o})
        for o in ("success", "error", "throttled")
    }
    series.completed("", 1500, cold=True, init_duration_us=20_000)
    series.completed("Unhandled", 10, cold=False, init_duration_us=0)
    series.refused()
    series.failed()
    after = {
        o: _value("nimbus_invocations_total", {**fn, "outcome": o})
        for o in ("success", "error", "throttled")
    }
    assert {o: after[o] - before[o] for o in after} == {"success": 1, "error": 2, "throttled": 1}
    assert _value("nimbus_invocation_errors_total", {**fn, "kind": "function"}) >= 1
    assert _value("nimbus_invocation_errors_total", {**fn, "kind": "platform"}) >= 1
    assert _value("nimbus_throttles_total", fn) >= 1 and _value("nimbus_cold_starts_total", fn) >= 1
    assert _value("nimbus_init_duration_seconds_sum", fn) >= 0.02


def _instance(fn: str, state: str) -> InstanceRecord:
    return InstanceRecord(
        instance_id=f"{fn}-{state}",
        node_id="n",
        node_address="a",
        namespace="ns",
        function=fn,
        version="1",
        code_sha256="x",
        function_revision=1,
        memory_mb=128,
        state=state,
        created_at="",
    )


def test_scheduler_instance_counts() -> None:
    counts = instance_counts(
        [_instance("a", "READY"), _instance("a", "READY"), _instance("b", "DRAINING")]
    )
    assert counts == {("ns", "a", "READY"): 2, ("ns", "b", "DRAINING"): 1}
