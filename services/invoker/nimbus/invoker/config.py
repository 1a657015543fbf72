from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import CommonConfig, get_float, get_int, get_str
from nimbus.common.registry import API_RELEASES, parse_api_versions
from nimbus.invoker.events.config import EventsConfig


@dataclass(frozen=True, slots=True)
class InvokerConfig:
    """NIMBUS_LISTEN_ADDR            gRPC listen address (default 127.0.0.1:7401)
    NIMBUS_SCHEDULER_ADDR            scheduler address (default 127.0.0.1:7501)
    NIMBUS_QUEUE_WAIT_S              longest a call waits for a free instance before 429 (default 10)
    NIMBUS_MAX_INSTANCES_PER_FN      instance cap of a function without max_concurrency (default 50)
    NIMBUS_REDIS_URL                 Redis for cross-replica concurrency slots (default redis://127.0.0.1:6379/0)
    NIMBUS_NAMESPACE_CONCURRENCY     calls in flight per namespace across replicas; 0 = no limit (default 0)
    NIMBUS_API_VERSIONS              public API versions this replica serves, e.g. v1 (default v1,v2)
    plus the async path's and triggers' variables, documented in eventsconfig.EventsConfig.
    """

    common: CommonConfig
    listen_addr: str
    scheduler_addr: str
    queue_wait_s: float
    max_instances_per_fn: int
    redis_url: str
    namespace_concurrency: int
    events: EventsConfig = EventsConfig()
    api_versions: tuple[str, ...] = API_RELEASES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InvokerConfig:
        return cls(
            common=CommonConfig.from_env(env, "invoker"),
            listen_addr=get_str(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7401"),
            scheduler_addr=get_str(env, "NIMBUS_SCHEDULER_ADDR", "127.0.0.1:7501"),
            queue_wait_s=get_float(env, "NIMBUS_QUEUE_WAIT_S", 10.0, minimum=0.1),
            max_instances_per_fn=get_int(env, "NIMBUS_MAX_INSTANCES_PER_FN", 50, minimum=1),
            redis_url=get_str(env, "NIMBUS_REDIS_URL", "redis://127.0.0.1:6379/0"),
            namespace_concurrency=get_int(env, "NIMBUS_NAMESPACE_CONCURRENCY", 0),
            events=EventsConfig.from_env(env),
            api_versions=parse_api_versions(env),
        )
