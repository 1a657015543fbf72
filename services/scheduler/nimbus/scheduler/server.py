"""gRPC adapter for nimbus.internal.v1.Scheduler."""

from __future__ import annotations

import grpc
from nimbus.internal.v1 import scheduler_pb2, scheduler_pb2_grpc, types_pb2
from nimbus.scheduler.scheduler import Scheduler


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):
    def __init__(self, core: Scheduler) -> None:
        self._core = core

    async def RequestInstance(
        self,
        request: scheduler_pb2.RequestInstanceRequest,
        context: grpc.aio.ServicerContext[
            scheduler_pb2.RequestInstanceRequest, types_pb2.InstanceInfo
        ],
    ) -> types_pb2.InstanceInfo:
        spec = request.spec
        placed = await self._core.request_instance(
            spec.namespace,
            spec.function,
            spec.config.memory_mb,
            spec,
            spec.code_sha256,
            spec.config.runtime,
        )
        return types_pb2.InstanceInfo(
            instance_id=placed.instance_id,
            node_id=placed.node_id,
            node_address=placed.node_address,
            spec=spec,
        )
