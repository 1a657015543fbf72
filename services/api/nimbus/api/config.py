from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.api.meterconfig import MeterConfig
from nimbus.common.config import CommonConfig, get_float, get_int, get_str
from nimbus.common.registry import API_RELEASES, parse_api_versions


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """NIMBUS_LISTEN_ADDR       gRPC listen address (default 127.0.0.1:7101)
    NIMBUS_FUNCMGR_ADDR         funcmgr address (default 127.0.0.1:7201)
    NIMBUS_FUNCMGR_TIMEOUT_S    deadline of one funcmgr call (default 30; code uploads are large)
    NIMBUS_MAX_ZIP_MB           largest code package a streaming upload may send (default 50)
    NIMBUS_API_VERSIONS         public API versions this replica serves, e.g. v1 (default v1,v2)
    plus metering's variables, documented in meterconfig.MeterConfig.
    """

    common: CommonConfig
    listen_addr: str
    funcmgr_addr: str
    funcmgr_timeout_s: float
    max_zip_bytes: int
    api_versions: tuple[str, ...] = API_RELEASES
    meter: MeterConfig = MeterConfig()

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ApiConfig:
        return cls(
            common=CommonConfig.from_env(env, "api"),
            listen_addr=get_str(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7101"),
            funcmgr_addr=get_str(env, "NIMBUS_FUNCMGR_ADDR", "127.0.0.1:7201"),
            funcmgr_timeout_s=get_float(env, "NIMBUS_FUNCMGR_TIMEOUT_S", 30.0, minimum=0.1),
            max_zip_bytes=get_int(env, "NIMBUS_MAX_ZIP_MB", 50, minimum=1) * 1024 * 1024,
            api_versions=parse_api_versions(env),
            meter=MeterConfig.from_env(env),
        )
