"""Client adapters for the scheduler and the node-agents."""

from __future__ import annotations

import time

from nimbus.common import rpc, tracing
from nimbus.common.clock import iso
from nimbus.common.convert import config_to_pb
from nimbus.common.model import InstanceRecord, InstanceState
from nimbus.common.service import StubCache, channel
from nimbus.internal.v1 import (
    nodeagent_pb2_grpc,
    scheduler_pb2,
    scheduler_pb2_grpc,
    types_pb2,
)
from nimbus.invoker.stores.nodestream import Call, NodeStream
from nimbus.invoker.sync.invoke import InvokeResult
from nimbus.invoker.sync.target import Target


class SchedulerClient:
    def __init__(self, address: str) -> None:
        self._channel = channel(address, "scheduler")
        # The generated *_pb2_grpc modules carry no annotations.
        self._stub = scheduler_pb2_grpc.SchedulerStub(self._channel)  # type: ignore[no-untyped-call, unused-ignore]

    async def close(self) -> None:
        await self._channel.close()

    async def request_instance(self, target: Target, timeout_s: float) -> InstanceRecord:
        spec = types_pb2.InstanceSpec(
            namespace=target.namespace,
            function=target.function,
            version=target.version,
            config=config_to_pb(target.config),
            code_sha256=target.code_sha256,
            function_revision=target.revision,
        )
        info = await rpc.call(
            self._stub.RequestInstance,
            scheduler_pb2.RequestInstanceRequest(spec=spec),
            timeout_s=timeout_s,
        )
        return InstanceRecord(
            instance_id=info.instance_id,
            node_id=info.node_id,
            node_address=info.node_address,
            namespace=target.namespace,
            function=target.function,
            version=target.version,
            code_sha256=target.code_sha256,
            function_revision=target.revision,
            memory_mb=target.config.memory_mb,
            instance_concurrency=target.config.instance_concurrency,
            state=InstanceState.READY,
            created_at=iso(time.time()),
        )


class NodeCaller:
    """Invokes instances over one multiplexed stream per node-agent."""

    def __init__(self) -> None:
        self._stubs = StubCache(nodeagent_pb2_grpc.NodeAgentStub, "node-agent")
        self._streams: dict[str, NodeStream] = {}

    async def invoke(
        self,
        instance: InstanceRecord,
        request_id: str,
        payload: bytes,
        timeout_s: float,
        log_tail: bool = False,
    ) -> InvokeResult:
        address = instance.node_address
        stream = self._streams.get(address)
        if stream is None:
            stream = self._streams[address] = NodeStream(self._stubs.get(address), address)
        # The call's fields set in place: building an InstanceInvokeRequest to copy into the call
        # costs twice as much.
        msg = Call(traceparent=tracing.current_traceparent())
        call = msg.invoke
        call.instance_id = instance.instance_id
        call.request_id = request_id
        call.payload = payload
        if log_tail:
            call.log_tail = True
        res = await stream.call(msg, timeout_s)
        return InvokeResult(
            request_id,
            res.payload,
            res.function_error,
            res.duration_us,
            res.billed_ms,
            res.cold_start,
            instance.version,
            res.init_duration_us,
            res.log_tail,
        )

    async def close(self) -> None:
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream.close()
        await self._stubs.close()
