"""Wires the node-agent together; no logic lives here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil

from nimbus.common import logs, mtls, service
from nimbus.common.clock import SystemClock, iso
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import ErrorInterceptor, TelemetryInterceptor
from nimbus.common.logs import kv
from nimbus.common.model import NodeRecord
from nimbus.internal.v1 import nodeagent_pb2_grpc
from nimbus.nodeagent.boot import Booter
from nimbus.nodeagent.codecache import CodeCache
from nimbus.nodeagent.config import NodeAgentConfig
from nimbus.nodeagent.instances import InstanceManager
from nimbus.nodeagent.invokelane import InvokeLane
from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.logcapture import LogWriter
from nimbus.nodeagent.logship import LogShipper
from nimbus.nodeagent.pool import WarmPool
from nimbus.nodeagent.prefetch import Prefetcher
from nimbus.nodeagent.reaper import reap_loop
from nimbus.nodeagent.registry import NodeRegistry
from nimbus.nodeagent.sandbox import new_driver
from nimbus.nodeagent.server import LANE_METHOD, STREAM_METHOD, NodeAgentServicer
from nimbus.nodeagent.stores.funcmgr import FuncmgrCodeSource
from nimbus.nodeagent.stores.logstream import LogStreamPublisher
from nimbus.nodeagent.telemetry import watch_instances

log = logging.getLogger(__name__)


async def main() -> None:
    cfg = NodeAgentConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    clock = SystemClock()

    layout = NodeLayout.for_node(cfg.common.home, cfg.node_id)
    layout.make_dirs()
    for stale in layout.socket_root.iterdir():
        shutil.rmtree(stale, ignore_errors=True)
    driver = new_driver(
        cfg.sandbox,
        layout,
        cfg.node_id,
        python=cfg.python,
        node=cfg.node,
        runc=cfg.runc,
        uid=cfg.sandbox_uid,
        tmp_mb=cfg.tmp_mb,
    )
    if not driver.isolated:
        log.warning(
            "!!! SANDBOX DISABLED: NIMBUS_SANDBOX=process (NIMBUS_ALLOW_UNSAFE_SANDBOX=1) runs "
            "function code as plain processes of this user, with NO isolation from the host, the "
            "network or each other; use runc in production !!!",
            extra=kv(sandbox=cfg.sandbox),
        )
    # Before serving: nothing a previous run of this node left may keep running.
    await driver.prepare()

    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port, mtls.configure())
    funcmgr = service.channel(cfg.funcmgr_addr, "funcmgr")
    node = NodeRecord(
        node_id=cfg.node_id,
        address=cfg.listen_addr,
        memory_mb=cfg.memory_mb,
        cpus=os.cpu_count() or 1,
        started_at=iso(clock.now()),
        sandbox=cfg.sandbox,
    )
    writer = LogWriter(layout.logs_dir, clock)
    publisher = LogStreamPublisher(
        cfg.nats_url,
        name=f"node-agent-{cfg.node_id}",
        retention_h=cfg.log_retention_h,
        max_mb=cfg.log_max_mb,
    )
    shipper = LogShipper(
        layout.logs_dir, writer, publisher, cfg.node_id, clock, every_s=cfg.log_ship_s
    )
    booter = Booter(driver, layout, writer, cpu_quota=cfg.cpu_quota, clock=clock, region=cfg.region)
    pool = WarmPool(booter, cfg.pool_sizes, clock)
    code = CodeCache(
        layout.code_dir,
        FuncmgrCodeSource(funcmgr),
        budget_mb=cfg.code_cache_mb,
        compile_python=cfg.python,
    )
    await code.load_index()
    registry = NodeRegistry(
        etcd,
        node,
        cfg.lease_ttl_s,
        clock,
        status=lambda: (tuple(sorted(code.usage())), pool.counts()),
    )
    manager = InstanceManager(
        node_id=cfg.node_id,
        node_address=cfg.listen_addr,
        booter=booter,
        pool=pool,
        code=code,
        records=registry,
        clock=clock,
        memory_mb=cfg.memory_mb,
    )

    prefetcher = Prefetcher(etcd, code)
    watch_instances(manager.states)
    server, health = service.new_server(
        [
            TelemetryInterceptor(
                untraced_prefixes=("/grpc.health.v1.", STREAM_METHOD, LANE_METHOD)
            ),
            ErrorInterceptor(),
        ]
    )
    lane: InvokeLane | None = None
    servicer = NodeAgentServicer(manager, lambda: lane.address if lane is not None else "")
    if cfg.invoke_lane_addr:
        lane = InvokeLane(servicer.run_call, cfg.invoke_lane_addr)
        await lane.start()
    nodeagent_pb2_grpc.add_NodeAgentServicer_to_server(servicer, server)

    async def on_stop() -> None:
        # The lease first: every record goes at once and invokers stop sending here.
        await registry.close()
        if lane is not None:
            await lane.close()
        await pool.close()
        await manager.close()
        await writer.flush()
        await driver.close()
        # What is not shipped now is shipped by the next start, from the files.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.5):
                await shipper.ship()
        await publisher.close()
        await etcd.close()
        await funcmgr.close()

    log.info("sandbox driver ready", extra=kv(sandbox=driver.name, warm_pool=cfg.pool_sizes))
    await service.serve(
        name="node-agent",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[
            registry.run,
            lambda: reap_loop(manager, clock, cfg.idle_s),
            pool.run,
            writer.run,
            shipper.run,
            prefetcher.run,
        ],
        ready=registry.wait_registered,
        drain=manager.drain,
        on_stop=on_stop,
        grace_s=cfg.common.drain_s,
        metrics_addr=cfg.common.metrics_addr,
    )
