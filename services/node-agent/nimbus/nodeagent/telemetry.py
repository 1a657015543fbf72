"""The node-agent's Prometheus series: its instances by state (read when scraped) and how its
instance starts went. Function-level series (calls, cold starts, init time) are the invoker's."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TypeVar

from nimbus.common.metrics import LATENCY_BUCKETS
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

T = TypeVar("T")

STARTS = Counter(
    "nimbus_instance_starts_total",
    "CreateInstance calls on this node, by runtime and outcome (ok | error)",
    ["runtime", "outcome"],
)
START_DURATION = Histogram(
    "nimbus_instance_start_seconds",
    "CreateInstance from request to a loaded, recorded instance, by runtime",
    ["runtime"],
    buckets=LATENCY_BUCKETS,
)


class InstanceStates(Collector):
    """nimbus_node_instances{state}: this node's instances, counted when scraped."""

    def __init__(self, states: Callable[[], Mapping[str, int]]) -> None:
        self._states = states

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "nimbus_node_instances", "Instances on this node by state", labels=["state"]
        )
        for state, count in self._states().items():
            family.add_metric([state], count)
        yield family


def watch_instances(states: Callable[[], Mapping[str, int]]) -> None:
    REGISTRY.register(InstanceStates(states))


async def timed_start(runtime: str, start: Awaitable[T]) -> T:
    """Awaits one instance start, counting and timing it."""
    t0 = time.perf_counter()
    try:
        result = await start
    except Exception:
        STARTS.labels(runtime, "error").inc()
        raise
    START_DURATION.labels(runtime).observe(time.perf_counter() - t0)
    STARTS.labels(runtime, "ok").inc()
    return result
