"""Wires the api service together; no logic here."""

from __future__ import annotations

import os

from nimbus.api.apikeys import KeyIssuer
from nimbus.api.config import ApiConfig
from nimbus.api.functions import FunctionsApi
from nimbus.api.stores.triggers import EtcdTriggerStore
from nimbus.api.triggers import TriggersApi
from nimbus.api.triggerserver import FunctionsAndTriggersServicer
from nimbus.api.versions import VersionsApi
from nimbus.api.stores.funcmgr import FuncMgrClient
from nimbus.api.stores.keys import EtcdKeyStore
from nimbus.api.v1 import functions_pb2_grpc
from nimbus.api.v2wiring import add_v2
from nimbus.common import logs
from nimbus.common.auth import Authenticator
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import AuthInterceptor, ErrorInterceptor
from nimbus.common.service import new_server, serve


async def main() -> None:
    cfg = ApiConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port)
    authenticator = Authenticator(etcd)
    funcmgr = FuncMgrClient(cfg.funcmgr_addr, cfg.funcmgr_timeout_s)
    # Errors outermost, so an auth failure is mapped like any other error.
    server, health = new_server([ErrorInterceptor(), AuthInterceptor(authenticator)])
    servicer = FunctionsAndTriggersServicer(
        FunctionsApi(funcmgr), VersionsApi(funcmgr), KeyIssuer(EtcdKeyStore(etcd), SystemClock()), cfg.max_zip_bytes,
        triggers=TriggersApi(funcmgr, EtcdTriggerStore(etcd), SystemClock()),
    )
    if "v1" in cfg.api_versions:
        functions_pb2_grpc.add_FunctionsServicer_to_server(servicer, server)
    if "v2" in cfg.api_versions:
        add_v2(server, FunctionsApi(funcmgr), VersionsApi(funcmgr), etcd)

    async def close() -> None:
        await funcmgr.close()
        await etcd.close()

    await serve(
        name="api",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[authenticator.cache.run],
        ready=lambda: authenticator.cache.wait_ready(60),
        on_stop=close,
        grace_s=cfg.common.drain_s,
        api_versions=cfg.api_versions,
    )
