from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import CommonConfig, get_float, get_int, get_str


@dataclass(frozen=True, slots=True)
class FuncMgrConfig:
    """NIMBUS_LISTEN_ADDR     gRPC listen address (default 127.0.0.1:7201)
    NIMBUS_CODE_DIR           code blob directory (default $NIMBUS_HOME/code)
    NIMBUS_MAX_ZIP_MB         largest accepted zip (default 50)
    NIMBUS_MAX_UNZIPPED_MB    largest unzipped size (default 250)
    NIMBUS_BLOB_GC_S          period of the code blob collector (default 300)
    NIMBUS_BLOB_GC_GRACE_S    an unreferenced blob younger than this is kept (default 600)
    """

    common: CommonConfig
    listen_addr: str
    code_dir: str
    max_zip_bytes: int
    max_unzipped_bytes: int
    blob_gc_s: float
    blob_gc_grace_s: float

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FuncMgrConfig:
        common = CommonConfig.from_env(env, "funcmgr")
        return cls(
            common=common,
            listen_addr=get_str(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7201"),
            code_dir=get_str(env, "NIMBUS_CODE_DIR", os.path.join(common.home, "code")),
            max_zip_bytes=get_int(env, "NIMBUS_MAX_ZIP_MB", 50, minimum=1) * 1024 * 1024,
            max_unzipped_bytes=get_int(env, "NIMBUS_MAX_UNZIPPED_MB", 250, minimum=1) * 1024 * 1024,
            blob_gc_s=get_float(env, "NIMBUS_BLOB_GC_S", 300.0, minimum=0.1),
            blob_gc_grace_s=get_float(env, "NIMBUS_BLOB_GC_GRACE_S", 600.0, minimum=0.0),
        )
