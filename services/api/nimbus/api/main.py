"""Wires the api service together; no logic here."""

from __future__ import annotations

import os

from nimbus.api.apikeys import KeyIssuer
from nimbus.api.code import CodeApi
from nimbus.api.config import ApiConfig
from nimbus.api.functions import FunctionsApi
from nimbus.api.logs import LogsApi
from nimbus.api.meter import Meter
from nimbus.api.metrics import MetricsApi
from nimbus.api.quotas import QuotasApi
from nimbus.api.stores.funcmgr import FuncMgrClient
from nimbus.api.stores.keys import EtcdKeyStore
from nimbus.api.stores.logfeed import LogFeed
from nimbus.api.stores.logstream import JetStreamLogStore
from nimbus.api.stores.meterstore import RedisMeter
from nimbus.api.stores.quotas import EtcdQuotaStore
from nimbus.api.stores.subjectqueues import NatsSubjectQueues
from nimbus.api.stores.triggers import EtcdTriggerStore
from nimbus.api.triggers import TriggersApi
from nimbus.api.triggerserver import FunctionsAndTriggersServicer
from nimbus.api.usage import UsageApi
from nimbus.api.v1 import functions_pb2_grpc
from nimbus.api.v2wiring import add_v2
from nimbus.api.versions import VersionsApi
from nimbus.common import logs, mtls
from nimbus.common.auth import Authenticator
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import AuthInterceptor, ErrorInterceptor, TelemetryInterceptor
from nimbus.common.service import new_server, serve


async def main() -> None:
    cfg = ApiConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port, mtls.configure())
    authenticator = Authenticator(etcd)
    funcmgr = FuncMgrClient(cfg.funcmgr_addr, cfg.funcmgr_timeout_s)
    clock = SystemClock()
    meter_store = RedisMeter(cfg.meter.redis_url, cfg.meter.seen_ttl_s, clock)
    log_feed = LogFeed(
        cfg.meter.nats_url,
        name=cfg.common.replica,
        retention_h=cfg.meter.log_retention_h,
        max_mb=cfg.meter.log_max_mb,
        ack_wait_s=cfg.meter.ack_wait_s,
        max_ack_pending=cfg.meter.batch * 8,
    )
    meter = Meter(log_feed, meter_store, clock, cfg.meter.batch)
    # Errors outermost, so an auth failure is mapped like any other error.
    server, health = new_server(
        [TelemetryInterceptor(), ErrorInterceptor(), AuthInterceptor(authenticator)]
    )
    log_store = JetStreamLogStore(
        cfg.meter.nats_url,
        name=f"{cfg.common.replica}-logs",
        retention_h=cfg.meter.log_retention_h,
        max_mb=cfg.meter.log_max_mb,
    )
    logs_api = LogsApi(FunctionsApi(funcmgr), log_store, clock)
    quota_store = EtcdQuotaStore(etcd)
    subject_queues = NatsSubjectQueues(
        cfg.meter.nats_url,
        name=f"{cfg.common.replica}-subjects",
        retention_h=cfg.meter.log_retention_h,
        max_mb=cfg.meter.log_max_mb,
    )
    servicer = FunctionsAndTriggersServicer(
        FunctionsApi(funcmgr, quota_store),
        VersionsApi(funcmgr),
        KeyIssuer(EtcdKeyStore(etcd), SystemClock()),
        cfg.max_zip_bytes,
        triggers=TriggersApi(funcmgr, EtcdTriggerStore(etcd), SystemClock(), subject_queues),
        metrics=MetricsApi(FunctionsApi(funcmgr), meter_store, clock),
        usage=UsageApi(meter_store, clock),
        logs=logs_api,
        quotas=QuotasApi(quota_store, clock),
        code=CodeApi(funcmgr),
    )
    if "v1" in cfg.api_versions:
        functions_pb2_grpc.add_FunctionsServicer_to_server(servicer, server)
    if "v2" in cfg.api_versions:
        add_v2(
            server, FunctionsApi(funcmgr, quota_store), VersionsApi(funcmgr), etcd, CodeApi(funcmgr)
        )

    async def drain() -> None:
        # Open tails end now: a client would otherwise hold the drain to its grace period.
        logs_api.close()

    async def close() -> None:
        await log_store.close()
        await subject_queues.close()
        await log_feed.close()
        await meter_store.close()
        await funcmgr.close()
        await etcd.close()

    await serve(
        name="api",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[authenticator.cache.run, log_feed.run, meter.run],
        ready=lambda: authenticator.cache.wait_ready(60),
        drain=drain,
        on_stop=close,
        grace_s=cfg.common.drain_s,
        metrics_addr=cfg.common.metrics_addr,
        api_versions=cfg.api_versions,
    )
