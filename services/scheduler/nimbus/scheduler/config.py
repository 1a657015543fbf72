from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import CommonConfig, get_float, get_str


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """NIMBUS_LISTEN_ADDR          gRPC listen address (default 127.0.0.1:7501)
    NIMBUS_INSTANCE_START_S        deadline for a node to start one instance (default 30)
    NIMBUS_RECONCILE_S             period of the reconcile loop (default 1)
    """

    common: CommonConfig
    listen_addr: str
    instance_start_s: float
    reconcile_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SchedulerConfig:
        return cls(
            common=CommonConfig.from_env(env, "scheduler"),
            listen_addr=get_str(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7501"),
            instance_start_s=get_float(env, "NIMBUS_INSTANCE_START_S", 30.0, minimum=1.0),
            reconcile_s=get_float(env, "NIMBUS_RECONCILE_S", 1.0, minimum=0.05),
        )
