"""Wires the scheduler together; no logic here."""

from __future__ import annotations

import os

from nimbus.common import logs
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import ErrorInterceptor
from nimbus.common.service import new_server, serve
from nimbus.internal.v1 import scheduler_pb2_grpc
from nimbus.scheduler.config import SchedulerConfig
from nimbus.scheduler.scheduler import Scheduler
from nimbus.scheduler.server import SchedulerServicer
from nimbus.scheduler.stores.nodes import EtcdFunctionReader, NodeAgentClient, caches


async def main() -> None:
    cfg = SchedulerConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port)
    watched = caches(etcd)
    client = NodeAgentClient()
    core = Scheduler(
        watched.nodes.items,
        watched.instances.items,
        watched.functions.items,
        watched.versions.items,
        EtcdFunctionReader(etcd),
        client,
        SystemClock(),
        cfg.instance_start_s,
    )
    server, health = new_server([ErrorInterceptor()])
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerServicer(core), server)

    async def ready() -> None:
        for cache in watched.all():
            await cache.wait_ready(60)

    async def reconcile() -> None:
        await ready()
        await core.reconcile_forever(cfg.reconcile_s)

    async def close() -> None:
        await core.close()
        await client.close()
        await etcd.close()

    await serve(
        name="scheduler",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[*(cache.run for cache in watched.all()), reconcile],
        ready=ready,
        on_stop=close,
        grace_s=cfg.common.drain_s,
    )
