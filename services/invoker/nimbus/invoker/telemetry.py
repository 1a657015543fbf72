"""The invoker's Prometheus series: what every call of a function did, as the invoker saw it.

Per (namespace, function, version) the hot path holds one FunctionSeries whose label children are
bound once (nimbus.common.metrics.Children); a call then costs a dict hit and a few increments.
Queue depth is read from the dispatcher's pools at scrape time, so calls pay nothing for it; the
async backlog is sampled from JetStream every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from nimbus.common.clock import Clock
from nimbus.common.metrics import LATENCY_BUCKETS, OVERFLOW, Children
from nimbus.invoker.sync.pool import Pool, PoolKey
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

_FN = ["namespace", "function", "version"]

INVOCATIONS = Counter(
    "nimbus_invocations_total",
    "Calls that reached a function, by outcome: success | error | throttled",
    [*_FN, "outcome"],
)
ERRORS = Counter(
    "nimbus_invocation_errors_total",
    "Failed calls by kind: function (the handler raised or its code did not load) | platform",
    [*_FN, "kind"],
)
THROTTLES = Counter(
    "nimbus_throttles_total",
    "Calls refused for the function's or namespace's concurrency limit",
    _FN,
)
DURATION = Histogram(
    "nimbus_invocation_duration_seconds",
    "The handler's run time as the instance measured it",
    _FN,
    buckets=LATENCY_BUCKETS,
)
COLD_STARTS = Counter(
    "nimbus_cold_starts_total", "Calls that waited for a new instance to start", _FN
)
INIT_DURATION = Histogram(
    "nimbus_init_duration_seconds",
    "The runtime's import of the handler on a cold start",
    _FN,
    buckets=LATENCY_BUCKETS,
)
CONCURRENT = Gauge("nimbus_concurrent_executions", "Calls running on an instance now", _FN)
DEAD_LETTERS = Counter(
    "nimbus_dead_letters_total",
    "Async events given up on and stored as dead letters",
    ["namespace", "function"],
)
ASYNC_BACKLOG = Gauge(
    "nimbus_async_backlog_events",
    "Events of the shared JetStream consumer: pending = not yet delivered, unacked = delivered "
    "and not yet finished (every replica samples the same consumer: aggregate with max, not sum)",
    ["state"],
)
BACKLOG_PENDING = ASYNC_BACKLOG.labels("pending")
BACKLOG_UNACKED = ASYNC_BACKLOG.labels("unacked")


class FunctionSeries:
    """One function version's children, bound once."""

    __slots__ = (
        "success",
        "error",
        "throttled",
        "function_errors",
        "platform_errors",
        "throttles",
        "duration",
        "cold_starts",
        "init_duration",
        "concurrent",
    )

    def __init__(self, key: tuple[str, str, str]) -> None:
        self.success = INVOCATIONS.labels(*key, "success")
        self.error = INVOCATIONS.labels(*key, "error")
        self.throttled = INVOCATIONS.labels(*key, "throttled")
        self.function_errors = ERRORS.labels(*key, "function")
        self.platform_errors = ERRORS.labels(*key, "platform")
        self.throttles = THROTTLES.labels(*key)
        self.duration = DURATION.labels(*key)
        self.cold_starts = COLD_STARTS.labels(*key)
        self.init_duration = INIT_DURATION.labels(*key)
        self.concurrent = CONCURRENT.labels(*key)

    def completed(
        self, function_error: str, duration_us: int, cold: bool, init_duration_us: int
    ) -> None:
        if function_error:
            self.error.inc()
            self.function_errors.inc()
        else:
            self.success.inc()
        self.duration.observe(duration_us / 1e6)
        if cold:
            self.cold_starts.inc()
            if init_duration_us:
                self.init_duration.observe(init_duration_us / 1e6)

    def refused(self) -> None:
        self.throttled.inc()
        self.throttles.inc()

    def failed(self) -> None:
        self.error.inc()
        self.platform_errors.inc()


_functions: Children[tuple[str, str, str], FunctionSeries] = Children(
    FunctionSeries, (OVERFLOW, OVERFLOW, OVERFLOW)
)
_dead_letters: Children[tuple[str, str], Counter] = Children(
    lambda key: DEAD_LETTERS.labels(*key), (OVERFLOW, OVERFLOW)
)


def function_series(namespace: str, function: str, version: str) -> FunctionSeries:
    return _functions.get((namespace, function, version))


def dead_lettered(namespace: str, function: str) -> None:
    _dead_letters.get((namespace, function)).inc()


class QueueDepth(Collector):
    """nimbus_queue_depth: calls waiting for an instance, per function version, read from the
    dispatcher's pools when scraped."""

    def __init__(self, pools: Callable[[], Mapping[PoolKey, Pool]]) -> None:
        self._pools = pools

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "nimbus_queue_depth", "Calls waiting in this invoker for a free instance", labels=_FN
        )
        depth: dict[tuple[str, str, str], int] = {}
        for key, pool in list(self._pools().items()):
            fn = (key.namespace, key.function, key.version)
            depth[fn] = depth.get(fn, 0) + sum(1 for w in pool.waiters if not w.done())
        for fn, waiting in depth.items():
            family.add_metric(list(fn), waiting)
        yield family


def watch_queues(pools: Callable[[], Mapping[PoolKey, Pool]]) -> None:
    REGISTRY.register(QueueDepth(pools))


class ConsumerBacklog(Protocol):
    async def backlog(self, timeout_s: float) -> tuple[int, int]: ...


async def sample_backlog(source: ConsumerBacklog, clock: Clock, every_s: float = 5.0) -> None:
    """Background task: JetStream's pending and unacked counts of the events consumer into
    nimbus_async_backlog_events. Never dies; a failed sample leaves the last value."""
    while True:
        try:
            pending, unacked = await source.backlog(min(every_s, 3.0))
            BACKLOG_PENDING.set(pending)
            BACKLOG_UNACKED.set(unacked)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.debug(
                "async backlog not sampled",
                extra={"fields": {"error": str(err) or type(err).__name__}},
            )
        await clock.sleep(every_s)
