"""Prometheus metrics: prometheus_client's process registry, served as text on NIMBUS_METRICS_ADDR.

prometheus_client, not OTel metrics: a labelled counter inc plus a histogram observe costs
~1.7 µs with pre-bound children against ~22 µs through the OTel SDK (timeit on this machine).
Each service defines its series in one module (nimbus.<svc>.telemetry); the hot path keeps
label children bound once per function (`Children`), never calling `.labels()` per call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)

log = logging.getLogger(__name__)

# Seconds: from a no-op handler's ~100 µs to the longest timeout_s (900 s).
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
)
# Distinct label sets one family keeps per process; past it new ones share the overflow series,
# so a tenant creating functions without end cannot grow the scrape without end.
MAX_KEYS = 2000
OVERFLOW = "_other"

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Children(Generic[K, V]):
    """Label children bound once per key (e.g. (namespace, function, version)): a dict hit per
    call instead of prometheus_client's `.labels()` (~4.5 µs against ~1.7 µs)."""

    __slots__ = ("_make", "_overflow_key", "_limit", "_entries")

    def __init__(self, make: Callable[[K], V], overflow_key: K, limit: int = MAX_KEYS) -> None:
        self._make = make
        self._overflow_key = overflow_key
        self._limit = limit
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V:
        entry = self._entries.get(key)
        if entry is None:
            if len(self._entries) >= self._limit:
                key = self._overflow_key
                entry = self._entries.get(key)
                if entry is not None:
                    return entry
            entry = self._entries[key] = self._make(key)
        return entry

    def __len__(self) -> int:
        return len(self._entries)


# -- the series every gRPC server has ---------------------------------------------------------

GRPC_REQUESTS = Counter(
    "nimbus_grpc_server_requests_total",
    "gRPC calls this replica served, by method and status code",
    ["method", "code"],
)
GRPC_LATENCY = Histogram(
    "nimbus_grpc_server_handling_seconds",
    "Time from a call's arrival to its reply, by method",
    ["method"],
    buckets=LATENCY_BUCKETS,
)


class MethodSeries:
    """One gRPC method's series, bound when the interceptor first wraps the method."""

    __slots__ = ("_method", "_latency", "_codes")

    def __init__(self, method: str) -> None:
        self._method = method
        self._latency = GRPC_LATENCY.labels(method)
        self._codes: dict[str, Counter] = {"OK": GRPC_REQUESTS.labels(method, "OK")}

    def observe(self, code: str, seconds: float) -> None:
        counter = self._codes.get(code)
        if counter is None:
            counter = self._codes[code] = GRPC_REQUESTS.labels(self._method, code)
        counter.inc()
        self._latency.observe(seconds)


# -- the scrape endpoint ----------------------------------------------------------------------


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    return generate_latest(registry)


async def serve_metrics(addr: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Serves the registry on addr (host:port) with prometheus_client's own HTTP server (a thread
    of its own) until cancelled, then shuts that server down."""
    host, _, port = addr.rpartition(":")
    server, thread = start_http_server(
        int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry
    )
    log.info("serving metrics", extra={"fields": {"metrics": addr}})
    try:
        await asyncio.Event().wait()
    finally:
        server.shutdown()
        server.server_close()
        await asyncio.to_thread(thread.join, 5)
