"""Wires the node-agent together; no logic lives here."""

from __future__ import annotations

import os

from nimbus.common import logs, service
from nimbus.common.clock import SystemClock, iso
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import ErrorInterceptor
from nimbus.common.model import NodeRecord
from nimbus.internal.v1 import nodeagent_pb2_grpc
from nimbus.nodeagent.codecache import CodeCache
from nimbus.nodeagent.config import NodeAgentConfig
from nimbus.nodeagent.instances import InstanceManager
from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.reaper import reap_loop
from nimbus.nodeagent.registry import NodeRegistry
from nimbus.nodeagent.sandbox import new_driver
from nimbus.nodeagent.server import NodeAgentServicer
from nimbus.nodeagent.stores.funcmgr import FuncmgrCodeSource


async def main() -> None:
    cfg = NodeAgentConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    clock = SystemClock()

    layout = NodeLayout.for_node(cfg.common.home, cfg.node_id)
    layout.make_dirs()
    driver = new_driver(cfg.sandbox, layout, python=cfg.python)
    # Before serving: nothing a previous run of this node left may keep running.
    await driver.reap_orphans()

    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port)
    funcmgr = service.channel(cfg.funcmgr_addr)
    node = NodeRecord(
        node_id=cfg.node_id,
        address=cfg.listen_addr,
        memory_mb=cfg.memory_mb,
        cpus=os.cpu_count() or 1,
        started_at=iso(clock.now()),
    )
    registry = NodeRegistry(etcd, node, cfg.lease_ttl_s, clock)
    manager = InstanceManager(
        node_id=cfg.node_id,
        node_address=cfg.listen_addr,
        layout=layout,
        driver=driver,
        code=CodeCache(layout.code_dir, FuncmgrCodeSource(funcmgr)),
        records=registry,
        clock=clock,
        memory_mb=cfg.memory_mb,
    )

    server, health = service.new_server([ErrorInterceptor()])
    nodeagent_pb2_grpc.add_NodeAgentServicer_to_server(NodeAgentServicer(manager), server)

    async def on_stop() -> None:
        await manager.close()
        await registry.close()
        await etcd.close()
        await funcmgr.close()

    await service.serve(
        name="node-agent",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[registry.run, lambda: reap_loop(manager, clock, cfg.idle_s)],
        ready=registry.wait_registered,
        drain=manager.drain,
        on_stop=on_stop,
        grace_s=cfg.common.drain_s,
    )
