"""The thin gRPC adapter for nimbus.internal.v1.NodeAgent:
proto → core call → proto, nothing else."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

import grpc
from nimbus.common import logs, metrics, tracing
from nimbus.common.convert import config_from_pb, config_to_pb
from nimbus.common.errors import NimbusError, status_number
from nimbus.internal.v1 import nodeagent_pb2, nodeagent_pb2_grpc, types_pb2
from nimbus.nodeagent import telemetry
from nimbus.nodeagent.instances import InstanceManager
from nimbus.nodeagent.spec import InstanceInfo, InstanceSpec, InvokeResult

log = logging.getLogger(__name__)

# A streamed call is traced and counted as the unary Invoke it stands for, so traces and the
# per-method series read the same whichever way the invoker called.
INVOKE_METHOD = "nimbus.internal.v1.NodeAgent/Invoke"
# The stream itself is not traced: it lives as long as the invoker, and each call on it has a span.
STREAM_METHOD = "/nimbus.internal.v1.NodeAgent/InvokeStream"
# Asked once per invoker connection: not worth a trace of its own.
LANE_METHOD = "/nimbus.internal.v1.NodeAgent/GetInvokeLane"


def spec_from_proto(msg: types_pb2.InstanceSpec) -> InstanceSpec:
    return InstanceSpec(
        msg.namespace,
        msg.function,
        msg.version,
        config_from_pb(msg.config),
        msg.code_sha256,
        msg.function_revision,
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
    def __init__(self, manager: InstanceManager, lane_address: Callable[[], str] = str) -> None:
        self._manager = manager
        self._lane_address = lane_address
        self._invoke_series = metrics.MethodSeries(INVOKE_METHOD)

    async def CreateInstance(
        self,
        request: nodeagent_pb2.CreateInstanceRequest,
        context: grpc.aio.ServicerContext[
            nodeagent_pb2.CreateInstanceRequest, types_pb2.InstanceInfo
        ],
    ) -> types_pb2.InstanceInfo:
        spec = spec_from_proto(request.spec)
        logs.bind_request("", spec.namespace, spec.function)
        return info_to_proto(
            await telemetry.timed_start(spec.config.runtime, self._manager.create(spec))
        )

    async def DestroyInstance(
        self,
        request: nodeagent_pb2.DestroyInstanceRequest,
        context: grpc.aio.ServicerContext[
            nodeagent_pb2.DestroyInstanceRequest, nodeagent_pb2.DestroyInstanceResponse
        ],
    ) -> nodeagent_pb2.DestroyInstanceResponse:
        await self._manager.destroy(request.instance_id, wait_s=context.time_remaining())
        return nodeagent_pb2.DestroyInstanceResponse()

    async def Invoke(
        self,
        request: nodeagent_pb2.InstanceInvokeRequest,
        context: grpc.aio.ServicerContext[
            nodeagent_pb2.InstanceInvokeRequest, nodeagent_pb2.InstanceInvokeResponse
        ],
    ) -> nodeagent_pb2.InstanceInvokeResponse:
        logs.request_id_var.set(request.request_id)
        r = await self._manager.invoke(
            request.instance_id,
            request.request_id,
            request.payload,
            wait_s=context.time_remaining(),
            log_tail=request.log_tail,
        )
        return result_to_proto(r)

    async def InvokeStream(
        self,
        requests: AsyncIterator[nodeagent_pb2.InvokeBatchRequest],
        context: grpc.aio.ServicerContext[
            nodeagent_pb2.InvokeBatchRequest, nodeagent_pb2.InvokeBatchResponse
        ],
    ) -> AsyncIterator[nodeagent_pb2.InvokeBatchResponse]:
        """Many calls at once over one stream: each runs in its own task; the replies ready when
        the stream can take a message go out together, in whatever order they finished. The
        invoker closing its side lets the calls in flight finish; the stream breaking (the invoker
        died) cancels them, as it would a unary call."""
        replies: asyncio.Queue[nodeagent_pb2.StreamedInvokeResponse | None] = asyncio.Queue()
        calls: set[asyncio.Task[None]] = set()

        async def run(msg: nodeagent_pb2.StreamedInvokeRequest) -> None:
            replies.put_nowait(await self.run_call(msg))

        async def read() -> None:
            try:
                async for batch in requests:
                    for msg in batch.calls:
                        task = asyncio.create_task(run(msg))
                        calls.add(task)
                        task.add_done_callback(calls.discard)
                if calls:
                    await asyncio.wait(set(calls))
            finally:
                replies.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            done = False
            while not done:
                first = await replies.get()
                if first is None:
                    break
                ready = [first]
                while not replies.empty():
                    reply = replies.get_nowait()
                    if reply is None:
                        done = True
                        break
                    ready.append(reply)
                yield nodeagent_pb2.InvokeBatchResponse(replies=ready)
            await reader
        finally:
            reader.cancel()
            for task in list(calls):
                task.cancel()

    async def GetInvokeLane(
        self,
        request: nodeagent_pb2.GetInvokeLaneRequest,
        context: grpc.aio.ServicerContext[
            nodeagent_pb2.GetInvokeLaneRequest, nodeagent_pb2.GetInvokeLaneResponse
        ],
    ) -> nodeagent_pb2.GetInvokeLaneResponse:
        return nodeagent_pb2.GetInvokeLaneResponse(address=self._lane_address())

    async def run_call(
        self, msg: nodeagent_pb2.StreamedInvokeRequest
    ) -> nodeagent_pb2.StreamedInvokeResponse:
        """One call of InvokeStream or of the invoke lane (invokelane.py)."""
        req = msg.invoke
        token, span = tracing.start(INVOKE_METHOD, msg.traceparent or None)
        logs.request_id_var.set(req.request_id)
        t0 = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            r = await self._manager.invoke(
                req.instance_id,
                req.request_id,
                req.payload,
                wait_s=msg.wait_ms / 1000 if msg.wait_ms > 0 else None,
                log_tail=req.log_tail,
            )
            reply = nodeagent_pb2.StreamedInvokeResponse(call_id=msg.call_id)
            fill_result(reply.result, r)
            return reply
        except NimbusError as err:
            code = err.code
            return nodeagent_pb2.StreamedInvokeResponse(
                call_id=msg.call_id, error_code=status_number(err), error_message=err.message
            )
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception(
                "streamed invoke failed", extra={"fields": {"instance_id": req.instance_id}}
            )
            return nodeagent_pb2.StreamedInvokeResponse(
                call_id=msg.call_id, error_code=code.value[0], error_message="internal error"
            )
        finally:
            self._invoke_series.observe(
                "OK" if code is grpc.StatusCode.OK else code.name, time.perf_counter() - t0
            )
            tracing.finish(token, span, None if code is grpc.StatusCode.OK else code.name)


def fill_result(msg: nodeagent_pb2.InstanceInvokeResponse, r: InvokeResult) -> None:
    """result_to_proto(r) written into msg (a reply's result field) in place: no message built and
    copied, and only the fields that are set (proto3 leaves the rest out anyway; payload is always
    written, which marks the field present even when it is empty)."""
    msg.payload = r.payload
    if r.function_error:
        msg.function_error = r.function_error
    if r.duration_us:
        msg.duration_us = r.duration_us
    if r.billed_ms:
        msg.billed_ms = r.billed_ms
    if r.cold_start:
        msg.cold_start = True
    if r.init_duration_us:
        msg.init_duration_us = r.init_duration_us
    if r.log_tail:
        msg.log_tail = r.log_tail


def result_to_proto(r: InvokeResult) -> nodeagent_pb2.InstanceInvokeResponse:
    return nodeagent_pb2.InstanceInvokeResponse(
        payload=r.payload,
        function_error=r.function_error,
        duration_us=r.duration_us,
        billed_ms=r.billed_ms,
        cold_start=r.cold_start,
        init_duration_us=r.init_duration_us,
        log_tail=r.log_tail,
    )
