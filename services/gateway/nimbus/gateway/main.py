"""Wires the gateway's control plane together; no logic here."""

from __future__ import annotations

import os

from nimbus.common import keys, logs, mtls
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd, WatchCache
from nimbus.common.interceptors import ErrorInterceptor, TelemetryInterceptor
from nimbus.common.registry import Rollout, ServiceEndpoint
from nimbus.common.service import new_server, serve
from nimbus.gateway import xds
from nimbus.gateway.config import GatewayConfig
from nimbus.gateway.stores.files import XdsDirectory
from nimbus.gateway.sync import GatewaySync


async def main() -> None:
    cfg = GatewayConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    out = XdsDirectory(cfg.xds_dir)
    # Envoy cannot start without its xDS files: write empty ones unless some are there already.
    out.write(
        {name: data for name, data in xds.seed_files().items() if not (cfg.xds_dir / name).exists()}
    )
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port, mtls.configure())
    endpoints = WatchCache(
        etcd, keys.registry_prefix(), lambda kv: ServiceEndpoint.from_json(kv.value)
    )
    rollouts = WatchCache(etcd, keys.rollouts_prefix(), lambda kv: Rollout.from_json(kv.value))
    sync = GatewaySync(
        endpoints, rollouts, out, SystemClock(), debounce_s=cfg.debounce_s, resync_s=cfg.resync_s
    )
    server, health = new_server([TelemetryInterceptor(), ErrorInterceptor()])

    await serve(
        name="gateway",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[endpoints.run, rollouts.run, sync.run],
        ready=sync.synced.wait,
        on_stop=etcd.close,
        grace_s=cfg.common.drain_s,
        metrics_addr=cfg.common.metrics_addr,
    )
