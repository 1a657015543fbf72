"""gRPC adapter for the public nimbus.api.v2.Admin service."""

from __future__ import annotations

import grpc
from nimbus.api.rollouts import AdminApi
from nimbus.api.v2 import admin_pb2 as pb
from nimbus.api.v2 import admin_pb2_grpc
from nimbus.common.auth import current_principal
from nimbus.common.model import NodeRecord
from nimbus.common.registry import Rollout, ServiceEndpoint


def endpoint_to_pb(e: ServiceEndpoint) -> pb.Endpoint:
    return pb.Endpoint(
        service=e.service,
        replica=e.replica,
        address=e.address,
        api_versions=list(e.api_versions),
        release=e.release,
        state=e.state,
        started_at=e.started_at,
    )


def rollout_to_pb(r: Rollout) -> pb.Rollout:
    return pb.Rollout(
        service=r.service, version=r.version, weight=r.weight, updated_at=r.updated_at
    )


def node_to_pb(n: NodeRecord) -> pb.Node:
    return pb.Node(
        node_id=n.node_id,
        address=n.address,
        memory_mb=n.memory_mb,
        cpus=n.cpus,
        started_at=n.started_at,
        sandbox=n.sandbox,
        isolated=n.sandbox == "runc",
        warm=n.warm,
        cached_code=len(n.cached_code),
    )


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, admin: AdminApi) -> None:
        self._admin = admin

    async def ListEndpoints(
        self,
        request: pb.ListEndpointsRequest,
        context: grpc.aio.ServicerContext[pb.ListEndpointsRequest, pb.ListEndpointsResponse],
    ) -> pb.ListEndpointsResponse:
        found = await self._admin.endpoints(current_principal(), request.service)
        return pb.ListEndpointsResponse(endpoints=[endpoint_to_pb(e) for e in found])

    async def SetRollout(
        self, request: pb.Rollout, context: grpc.aio.ServicerContext[pb.Rollout, pb.Rollout]
    ) -> pb.Rollout:
        rollout = await self._admin.set_rollout(
            current_principal(), request.service, request.version, request.weight
        )
        return rollout_to_pb(rollout)

    async def ListRollouts(
        self,
        request: pb.ListRolloutsRequest,
        context: grpc.aio.ServicerContext[pb.ListRolloutsRequest, pb.ListRolloutsResponse],
    ) -> pb.ListRolloutsResponse:
        return pb.ListRolloutsResponse(
            rollouts=[rollout_to_pb(r) for r in await self._admin.rollouts(current_principal())]
        )

    async def DeleteRollout(
        self,
        request: pb.DeleteRolloutRequest,
        context: grpc.aio.ServicerContext[pb.DeleteRolloutRequest, pb.DeleteRolloutResponse],
    ) -> pb.DeleteRolloutResponse:
        await self._admin.delete_rollout(current_principal(), request.service)
        return pb.DeleteRolloutResponse()

    async def ListNodes(
        self,
        request: pb.ListNodesRequest,
        context: grpc.aio.ServicerContext[pb.ListNodesRequest, pb.ListNodesResponse],
    ) -> pb.ListNodesResponse:
        nodes = await self._admin.nodes(current_principal())
        return pb.ListNodesResponse(nodes=[node_to_pb(n) for n in nodes])
