"""Client adapter for the node-agents and the etcd caches the scheduler reads."""

from __future__ import annotations

from dataclasses import dataclass

from nimbus.common import keys, rpc
from nimbus.common.convert import config_to_pb
from nimbus.common.etcd import Etcd, WatchCache
from nimbus.common.model import (
    FunctionRecord,
    InstanceRecord,
    LoadReport,
    NodeRecord,
    VersionRecord,
)
from nimbus.common.service import StubCache
from nimbus.internal.v1 import nodeagent_pb2, nodeagent_pb2_grpc, types_pb2
from nimbus.scheduler.scaler import ScaleTarget
from nimbus.scheduler.scheduler import Placed


class NodeAgentClient:
    def __init__(self) -> None:
        self._stubs = StubCache(nodeagent_pb2_grpc.NodeAgentStub, "node-agent")

    async def create_instance(self, address: str, spec: object, timeout_s: float) -> Placed:
        # The core passes the request's InstanceSpec through untouched: it never imports the protos.
        req = nodeagent_pb2.CreateInstanceRequest(spec=spec)  # type: ignore[arg-type]
        info = await rpc.call(self._stubs.get(address).CreateInstance, req, timeout_s=timeout_s)
        return Placed(info.instance_id, info.node_id, info.node_address)

    async def destroy_instance(self, address: str, instance_id: str, timeout_s: float) -> None:
        req = nodeagent_pb2.DestroyInstanceRequest(instance_id=instance_id)
        await rpc.call(self._stubs.get(address).DestroyInstance, req, timeout_s=timeout_s)

    async def close(self) -> None:
        await self._stubs.close()


class EtcdFunctionReader:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    async def get(self, namespace: str, name: str) -> FunctionRecord | None:
        kv = await self._etcd.get(keys.function(namespace, name))
        return None if kv is None else FunctionRecord.from_json(kv.value, kv.mod_revision)

    async def version_exists(self, namespace: str, name: str, version: str) -> bool:
        return await self._etcd.get(keys.version(namespace, name, version)) is not None


def spec_for(target: ScaleTarget) -> types_pb2.InstanceSpec:
    return types_pb2.InstanceSpec(
        namespace=target.namespace,
        function=target.function,
        version=target.version,
        config=config_to_pb(target.config),
        code_sha256=target.code_sha256,
        function_revision=target.revision,
    )


@dataclass(frozen=True, slots=True)
class Caches:
    nodes: WatchCache[NodeRecord]
    instances: WatchCache[InstanceRecord]
    functions: WatchCache[FunctionRecord]
    versions: WatchCache[VersionRecord]
    reports: WatchCache[LoadReport]

    def all(
        self,
    ) -> tuple[
        WatchCache[NodeRecord],
        WatchCache[InstanceRecord],
        WatchCache[FunctionRecord],
        WatchCache[VersionRecord],
        WatchCache[LoadReport],
    ]:
        return self.nodes, self.instances, self.functions, self.versions, self.reports


def caches(etcd: Etcd) -> Caches:
    return Caches(
        WatchCache(etcd, keys.nodes_prefix(), lambda kv: NodeRecord.from_json(kv.value)),
        WatchCache(etcd, keys.instances_prefix(), lambda kv: InstanceRecord.from_json(kv.value)),
        WatchCache(
            etcd,
            keys.functions_prefix(),
            lambda kv: FunctionRecord.from_json(kv.value, kv.mod_revision),
        ),
        WatchCache(
            etcd,
            keys.versions_prefix(),
            lambda kv: VersionRecord.from_json(kv.value, kv.mod_revision),
        ),
        WatchCache(etcd, keys.load_reports_prefix(), lambda kv: LoadReport.from_json(kv.value)),
    )
