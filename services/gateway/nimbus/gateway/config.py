from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nimbus.common.config import CommonConfig, get_float, get_str


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The gateway's control plane (gateway-sync): the service registry in
    etcd -> Envoy's xDS files.

    NIMBUS_LISTEN_ADDR       gRPC listen address, for its health check (default 127.0.0.1:7601)
    NIMBUS_XDS_DIR           where the xDS files Envoy watches are written (default
                             NIMBUS_HOME/run/xds)
    NIMBUS_XDS_DEBOUNCE_S    how long a burst of registry changes is gathered into one write
                             (default 0.02)
    NIMBUS_XDS_RESYNC_S      files are rewritten from the registry at least this often (default 5)
    """

    common: CommonConfig
    listen_addr: str
    xds_dir: Path
    debounce_s: float
    resync_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewayConfig:
        common = CommonConfig.from_env(env, "gateway")
        xds_dir = env.get("NIMBUS_XDS_DIR", "").strip() or os.path.join(common.home, "run", "xds")
        return cls(
            common=common,
            listen_addr=get_str(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7601"),
            xds_dir=Path(xds_dir),
            debounce_s=get_float(env, "NIMBUS_XDS_DEBOUNCE_S", 0.02),
            resync_s=get_float(env, "NIMBUS_XDS_RESYNC_S", 5.0, minimum=0.1),
        )
