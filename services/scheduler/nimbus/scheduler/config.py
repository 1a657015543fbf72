from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import CommonConfig, get_float, get_int, get_str


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """NIMBUS_LISTEN_ADDR          gRPC listen address (default 127.0.0.1:7501)
    NIMBUS_INSTANCE_START_S        deadline for a node to start one instance (default 30)
    NIMBUS_RECONCILE_S             period of the reconcile and autoscaler loops (default 1)
    NIMBUS_SCALE_STABLE_WINDOW_S   the autoscaler's stable window (default 60)
    NIMBUS_SCALE_PANIC_WINDOW_S    the autoscaler's panic window (default 6)
    NIMBUS_LEADER_TTL_S            lease of the leader key; a standby takes over within ~this
                                   (default 5)
    """

    common: CommonConfig
    listen_addr: str
    instance_start_s: float
    reconcile_s: float
    stable_window_s: float
    panic_window_s: float
    leader_ttl_s: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SchedulerConfig:
        return cls(
            common=CommonConfig.from_env(env, "scheduler"),
            listen_addr=get_str(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7501"),
            instance_start_s=get_float(env, "NIMBUS_INSTANCE_START_S", 30.0, minimum=1.0),
            reconcile_s=get_float(env, "NIMBUS_RECONCILE_S", 1.0, minimum=0.05),
            stable_window_s=get_float(env, "NIMBUS_SCALE_STABLE_WINDOW_S", 60.0, minimum=1.0),
            panic_window_s=get_float(env, "NIMBUS_SCALE_PANIC_WINDOW_S", 6.0, minimum=1.0),
            leader_ttl_s=get_int(env, "NIMBUS_LEADER_TTL_S", 5, minimum=2),
        )
