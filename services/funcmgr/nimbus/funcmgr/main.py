"""Wires funcmgr together; no logic here."""

from __future__ import annotations

import os

from nimbus.common import logs, mtls
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import ErrorInterceptor, TelemetryInterceptor
from nimbus.common.service import new_server, serve
from nimbus.funcmgr.blobgc import BlobCollector
from nimbus.funcmgr.config import FuncMgrConfig
from nimbus.funcmgr.functions import FunctionManager
from nimbus.funcmgr.package import PackageLimits
from nimbus.funcmgr.server import FunctionManagerServicer
from nimbus.funcmgr.stores.blobs import BlobStore
from nimbus.funcmgr.stores.functions import EtcdFunctionStore
from nimbus.funcmgr.versions import VersionManager
from nimbus.internal.v1 import funcmgr_pb2_grpc


async def main() -> None:
    cfg = FuncMgrConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port, mtls.configure())
    blobs = BlobStore(cfg.code_dir)
    store = EtcdFunctionStore(etcd)
    clock = SystemClock()
    core = FunctionManager(
        store, blobs, PackageLimits(cfg.max_zip_bytes, cfg.max_unzipped_bytes), clock
    )
    versions = VersionManager(store, clock)
    collector = BlobCollector(etcd, blobs, clock, cfg.blob_gc_s, cfg.blob_gc_grace_s)
    server, health = new_server([TelemetryInterceptor(), ErrorInterceptor()])
    funcmgr_pb2_grpc.add_FunctionManagerServicer_to_server(
        FunctionManagerServicer(core, versions, blobs), server
    )
    await serve(
        name="funcmgr",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[collector.run],
        ready=lambda: etcd.wait_ready(),
        on_stop=etcd.close,
        grace_s=cfg.common.drain_s,
        metrics_addr=cfg.common.metrics_addr,
    )
