"""The scheduler's Prometheus series, read from its etcd watch caches when scraped: the cluster's
instances by function and state, and which replica leads. Every replica reports the instances as
its cache sees them (no gap while leadership moves), so aggregate them with max, not sum."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Mapping

from nimbus.common.model import InstanceRecord
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class ClusterInstances(Collector):
    def __init__(
        self, instances: Callable[[], Mapping[bytes, InstanceRecord]], is_leader: Callable[[], bool]
    ) -> None:
        self._instances = instances
        self._is_leader = is_leader

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "nimbus_scheduler_leader",
            "1 on the replica that runs the autoscaler, else 0",
            value=1 if self._is_leader() else 0,
        )
        family = GaugeMetricFamily(
            "nimbus_scheduler_instances",
            "Instances in the cluster by function and state "
            "(every replica reports the same: aggregate with max)",
            labels=["namespace", "function", "state"],
        )
        for (namespace, function, state), n in sorted(
            instance_counts(list(self._instances().values())).items()
        ):
            family.add_metric([namespace, function, state], n)
        yield family


def instance_counts(instances: list[InstanceRecord]) -> Counter[tuple[str, str, str]]:
    return Counter((i.namespace, i.function, i.state) for i in instances)


def watch_instances(
    instances: Callable[[], Mapping[bytes, InstanceRecord]], is_leader: Callable[[], bool]
) -> None:
    REGISTRY.register(ClusterInstances(instances, is_leader))
