"""The sync path's settings (a part of InvokerConfig)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import get_float, get_int, get_str


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """NIMBUS_SCHEDULER_ADDR           scheduler address (default 127.0.0.1:7501)
    NIMBUS_QUEUE_WAIT_S              longest a call waits for a free instance before 429
                                     (default 10)
    NIMBUS_MAX_INSTANCES_PER_FN      instance cap of a function without max_concurrency
                                     (default 50)
    NIMBUS_REDIS_URL                 Redis for cross-replica concurrency slots
                                     (default redis://127.0.0.1:6379/0)
    NIMBUS_NAMESPACE_CONCURRENCY     calls in flight per namespace across replicas; 0 = no limit
                                     (default 0)
    NIMBUS_GATEWAY_KEY_RPS           the gateway's per-key rate, which also bounds the calls a
                                     key sends inside batches (default 5000)
    """

    scheduler_addr: str = "127.0.0.1:7501"
    queue_wait_s: float = 10.0
    max_instances_per_fn: int = 50
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace_concurrency: int = 0
    key_rps: int = 5000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SyncConfig:
        return cls(
            scheduler_addr=get_str(env, "NIMBUS_SCHEDULER_ADDR", "127.0.0.1:7501"),
            queue_wait_s=get_float(env, "NIMBUS_QUEUE_WAIT_S", 10.0, minimum=0.1),
            max_instances_per_fn=get_int(env, "NIMBUS_MAX_INSTANCES_PER_FN", 50, minimum=1),
            redis_url=get_str(env, "NIMBUS_REDIS_URL", "redis://127.0.0.1:6379/0"),
            namespace_concurrency=get_int(env, "NIMBUS_NAMESPACE_CONCURRENCY", 0),
            key_rps=get_int(env, "NIMBUS_GATEWAY_KEY_RPS", 5000, minimum=1),
        )
