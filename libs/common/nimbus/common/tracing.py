"""Traces across every hop: W3C traceparent in gRPC metadata and NATS headers, OTLP export when
OTEL_EXPORTER_OTLP_ENDPOINT is set.

Without an endpoint nothing is recorded or exported, yet every request still has a trace id (the
caller's traceparent, else a new one) that goes on to the next hop and into every log line, so
`grep <trace_id> $NIMBUS_HOME/logs/*` follows one request across services for the price of a
contextvar (the SDK's spans cost 10-25 µs each; measured in the issue 7 report).

`setup()` is called once per process by nimbus.common.service.serve; `shutdown()` flushes.

    OTEL_EXPORTER_OTLP_ENDPOINT  OTLP/gRPC collector, e.g. http://127.0.0.1:4317 (default: no
                                 export)
    OTEL_BSP_SCHEDULE_DELAY      ms between span batches sent to it (default 5000)
    OTEL_SERVICE_NAME            service.name of the spans (default: the service, e.g. invoker)
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import AbstractContextManager
from contextvars import Token
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nimbus.common.config import ConfigError, get_int
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, Span, SpanContext, TraceFlags
from opentelemetry.trace import SpanKind as SpanKind

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
# The response header that tells a caller the trace id of its call.
TRACE_ID_HEADER = "x-nimbus-trace-id"

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSAMPLED = TraceFlags(TraceFlags.DEFAULT)
_NO_SPAN: AbstractContextManager[Span] = contextlib.nullcontext(INVALID_SPAN)
_ROOT = Context()

_tracer: trace.Tracer | None = None
_provider: TracerProvider | None = None


@dataclass(frozen=True, slots=True)
class TracingConfig:
    endpoint: str
    service_name: str
    replica: str
    schedule_delay_ms: int

    @classmethod
    def from_env(cls, env: Mapping[str, str], service: str, replica: str) -> TracingConfig:
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        if endpoint and "://" not in endpoint:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint!r} must be a URL such as http://127.0.0.1:4317"
            )
        return cls(
            endpoint=endpoint,
            service_name=env.get("OTEL_SERVICE_NAME", "").strip() or service,
            replica=replica,
            schedule_delay_ms=get_int(env, "OTEL_BSP_SCHEDULE_DELAY", 5000, minimum=1),
        )


def setup(cfg: TracingConfig) -> None:
    """Starts the export pipeline when an endpoint is configured (once per process)."""
    global _tracer, _provider
    if not cfg.endpoint or _tracer is not None:
        return
    # Imported here: a process that exports nothing never loads the SDK and its gRPC exporter.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    resource = Resource.create(
        {"service.name": cfg.service_name, "service.instance.id": cfg.replica}
    )
    provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
    exporter = OTLPSpanExporter(
        endpoint=cfg.endpoint, insecure=cfg.endpoint.startswith("http://"), timeout=5
    )
    provider.add_span_processor(
        BatchSpanProcessor(exporter, schedule_delay_millis=cfg.schedule_delay_ms)
    )
    _provider = provider
    _tracer = provider.get_tracer("nimbus")
    log.info(
        "exporting traces",
        extra={"fields": {"endpoint": cfg.endpoint, "service_name": cfg.service_name}},
    )


def shutdown() -> None:
    """Flushes the spans not yet sent (blocking; serve() runs it in a thread)."""
    global _tracer, _provider
    provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def exporting() -> bool:
    return _tracer is not None


# -- traceparent ------------------------------------------------------------------------------


def parse_traceparent(value: str | None) -> SpanContext | None:
    """A remote SpanContext from a W3C traceparent ("00-<32 hex>-<16 hex>-<2 hex>"), else None."""
    if not value or len(value) < 55 or value[2] != "-" or value[35] != "-" or value[52] != "-":
        return None
    version = value[:2]
    if version == "ff" or (version == "00" and len(value) != 55):
        return None
    try:
        trace_id = int(value[3:35], 16)
        span_id = int(value[36:52], 16)
        flags = int(value[53:55], 16)
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    return SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=_SAMPLED if flags & 1 else _UNSAMPLED
    )


def format_traceparent(ctx: SpanContext) -> str:
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def new_span_context() -> SpanContext:
    """Fresh ids for a request that came without a traceparent (nothing records it)."""
    return SpanContext(
        random.getrandbits(128) or 1,
        random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=_UNSAMPLED,
    )


current_span = trace.get_current_span


def current_trace_id() -> str:
    """The current trace id as 32 hex digits, "" outside any request."""
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.trace_id else ""


def current_traceparent() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format_traceparent(ctx) if ctx.trace_id else ""


def with_traceparent(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """Outgoing gRPC metadata plus the current traceparent (unchanged outside any request)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.trace_id:
        return metadata
    return (*metadata, (TRACEPARENT, format_traceparent(ctx)))


def inject(headers: MutableMapping[str, str]) -> None:
    """Puts the current traceparent into message headers (NATS)."""
    value = current_traceparent()
    if value:
        headers[TRACEPARENT] = value


# -- spans ------------------------------------------------------------------------------------


def span(name: str, kind: SpanKind = SpanKind.INTERNAL) -> AbstractContextManager[Span]:
    """A child span of the current one while exporting; else nothing at all (the trace id of the
    request stays current). `if s.is_recording(): s.set_attribute(...)`
    keeps attributes free too."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(name, kind=kind)


def start(
    name: str, traceparent: str | None, kind: SpanKind = SpanKind.SERVER
) -> tuple[Token[Context], Span]:
    """Makes a span that continues the caller's trace (a new trace without one) current in this
    task; end it with finish(). The span records only while exporting."""
    parent = parse_traceparent(traceparent)
    span_: Span
    if _tracer is None:
        span_ = NonRecordingSpan(parent or new_span_context())
    else:
        ctx = (
            trace.set_span_in_context(NonRecordingSpan(parent), _ROOT)
            if parent is not None
            else _ROOT
        )
        span_ = _tracer.start_span(name, context=ctx, kind=kind)
    return otel_context.attach(trace.set_span_in_context(span_)), span_


def finish(token: Token[Context], span_: Span, error: str | None = None) -> None:
    if span_.is_recording():
        if error is not None:
            span_.set_status(trace.Status(trace.StatusCode.ERROR, error))
        span_.end()
    otel_context.detach(token)


@contextlib.contextmanager
def continued(
    name: str, traceparent: str | None, kind: SpanKind = SpanKind.CONSUMER
) -> Iterator[Span]:
    """`with continued("async.run", headers.get(TRACEPARENT)) as s:` for work that arrives by
    message rather than by RPC."""
    token, span_ = start(name, traceparent, kind)
    error: str | None = None
    try:
        yield span_
    except BaseException as err:
        error = type(err).__name__
        raise
    finally:
        finish(token, span_, error)
