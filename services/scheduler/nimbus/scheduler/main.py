"""Wires the scheduler together; no logic here."""

from __future__ import annotations

import os

from nimbus.common import keys, logs, mtls
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import ErrorInterceptor, TelemetryInterceptor
from nimbus.common.service import new_server, serve
from nimbus.internal.v1 import scheduler_pb2_grpc
from nimbus.scheduler.config import SchedulerConfig
from nimbus.scheduler.leader import LeaderElection
from nimbus.scheduler.scaler import Autoscaler, Tuning
from nimbus.scheduler.scheduler import Scheduler
from nimbus.scheduler.server import SchedulerServicer
from nimbus.scheduler.stores.nodes import EtcdFunctionReader, NodeAgentClient, caches, spec_for
from nimbus.scheduler.telemetry import watch_instances


async def main() -> None:
    cfg = SchedulerConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port, mtls.configure())
    watched = caches(etcd)
    clock = SystemClock()
    client = NodeAgentClient()
    core = Scheduler(
        watched.nodes.items,
        watched.instances.items,
        watched.functions.items,
        watched.versions.items,
        EtcdFunctionReader(etcd),
        client,
        clock,
        cfg.instance_start_s,
        spec_for,
    )
    leader = LeaderElection(
        etcd, keys.scheduler_leader(), cfg.common.replica, clock, cfg.leader_ttl_s
    )
    autoscaler = Autoscaler(
        watched.functions.items,
        watched.versions.items,
        watched.instances.items,
        watched.reports.items,
        core,
        clock,
        Tuning(cfg.stable_window_s, cfg.panic_window_s),
        lambda: leader.is_leader,
    )
    watch_instances(lambda: watched.instances.items, lambda: leader.is_leader)
    server, health = new_server([TelemetryInterceptor(), ErrorInterceptor()])
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerServicer(core), server)

    async def ready() -> None:
        for cache in watched.all():
            await cache.wait_ready(60)

    async def reconcile() -> None:
        await ready()
        await core.reconcile_forever(cfg.reconcile_s, lambda: leader.is_leader)

    async def autoscale() -> None:
        await ready()
        await autoscaler.run(cfg.reconcile_s)

    async def close() -> None:
        await leader.resign()
        await core.close()
        await client.close()
        await etcd.close()

    await serve(
        name="scheduler",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[*(cache.run for cache in watched.all()), leader.run, reconcile, autoscale],
        ready=ready,
        on_stop=close,
        grace_s=cfg.common.drain_s,
        metrics_addr=cfg.common.metrics_addr,
    )
