"""The thin gRPC adapter for nimbus.internal.v1.NodeAgent: proto → core call → proto, nothing else."""

from __future__ import annotations

import grpc

from nimbus.common.convert import config_from_pb, config_to_pb
from nimbus.internal.v1 import nodeagent_pb2, nodeagent_pb2_grpc, types_pb2
from nimbus.nodeagent.instances import InstanceManager
from nimbus.nodeagent.spec import InstanceInfo, InstanceSpec


def spec_from_proto(msg: types_pb2.InstanceSpec) -> InstanceSpec:
    return InstanceSpec(
        msg.namespace, msg.function, msg.version, config_from_pb(msg.config), msg.code_sha256, msg.function_revision
    )


def spec_to_proto(spec: InstanceSpec) -> types_pb2.InstanceSpec:
    return types_pb2.InstanceSpec(
        namespace=spec.namespace,
        function=spec.function,
        version=spec.version,
        config=config_to_pb(spec.config),
        code_sha256=spec.code_sha256,
        function_revision=spec.function_revision,
    )


def info_to_proto(info: InstanceInfo) -> types_pb2.InstanceInfo:
    return types_pb2.InstanceInfo(
        instance_id=info.instance_id,
        node_id=info.node_id,
        node_address=info.node_address,
        spec=spec_to_proto(info.spec),
    )


class NodeAgentServicer(nodeagent_pb2_grpc.NodeAgentServicer):
    def __init__(self, manager: InstanceManager) -> None:
        self._manager = manager

    async def CreateInstance(
        self, request: nodeagent_pb2.CreateInstanceRequest, context: grpc.aio.ServicerContext
    ) -> types_pb2.InstanceInfo:
        return info_to_proto(await self._manager.create(spec_from_proto(request.spec)))

    async def DestroyInstance(
        self, request: nodeagent_pb2.DestroyInstanceRequest, context: grpc.aio.ServicerContext
    ) -> nodeagent_pb2.DestroyInstanceResponse:
        await self._manager.destroy(request.instance_id, wait_s=context.time_remaining())
        return nodeagent_pb2.DestroyInstanceResponse()

    async def Invoke(
        self, request: nodeagent_pb2.InstanceInvokeRequest, context: grpc.aio.ServicerContext
    ) -> nodeagent_pb2.InstanceInvokeResponse:
        r = await self._manager.invoke(
            request.instance_id,
            request.request_id,
            request.payload,
            wait_s=context.time_remaining(),
            log_tail=request.log_tail,
        )
        return nodeagent_pb2.InstanceInvokeResponse(
            payload=r.payload,
            function_error=r.function_error,
            duration_us=r.duration_us,
            billed_ms=r.billed_ms,
            cold_start=r.cold_start,
            init_duration_us=r.init_duration_us,
            log_tail=r.log_tail,
        )
