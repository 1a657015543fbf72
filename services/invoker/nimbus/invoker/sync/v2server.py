"""gRPC adapter for the public nimbus.api.v2.Invocations service: v1's Invoke unchanged, and
BatchInvoke over the same Invoker core (batch.py)."""

from __future__ import annotations

import grpc

# googleapis-common-protos ships .pyi files but no py.typed marker.
from google.api import httpbody_pb2  # type: ignore[import-untyped, unused-ignore]
from google.protobuf import json_format, struct_pb2
from nimbus.api.v1 import invocations_pb2 as v1_pb
from nimbus.api.v2 import invocations_pb2 as pb
from nimbus.api.v2 import invocations_pb2_grpc
from nimbus.common.auth import current_principal
from nimbus.invoker.sync.batch import BatchInvoker, BatchItem, BatchOutcome
from nimbus.invoker.sync.replyheaders import DEFAULT_DEADLINE_S
from nimbus.invoker.sync.server import InvocationsServicer


def event_bytes(item: pb.BatchInvokeItem) -> bytes:
    if not item.HasField("event"):
        return b"{}"
    return json_format.MessageToJson(item.event, indent=None).encode()


def payload_value(payload: bytes) -> struct_pb2.Value:
    value = struct_pb2.Value()
    try:
        json_format.Parse(payload or b"null", value)
    except json_format.ParseError:
        value.string_value = payload.decode(errors="replace")
    return value


def outcome_to_pb(outcome: BatchOutcome) -> pb.BatchInvokeResult:
    if outcome.error is not None:
        err = outcome.error
        return pb.BatchInvokeResult(
            error=pb.BatchError(
                code=err.code.name, http_status=err.http_status, message=err.message
            )
        )
    r = outcome.result
    assert r is not None
    return pb.BatchInvokeResult(
        result=payload_value(r.payload),
        function_error=r.function_error,
        request_id=r.request_id,
        executed_version=r.executed_version,
        cold_start=r.cold_start,
        billed_ms=r.billed_ms,
    )


class InvocationsV2Servicer(invocations_pb2_grpc.InvocationsServicer):
    def __init__(self, v1: InvocationsServicer, batch: BatchInvoker) -> None:
        self._v1 = v1
        self._batch = batch

    async def Invoke(
        self,
        request: pb.InvokeRequest,
        context: grpc.aio.ServicerContext[pb.InvokeRequest, httpbody_pb2.HttpBody],
    ) -> httpbody_pb2.HttpBody:
        same = v1_pb.InvokeRequest(
            name=request.name, qualifier=request.qualifier, body=request.body
        )
        return await self._v1.Invoke(same, context)

    async def BatchInvoke(
        self,
        request: pb.BatchInvokeRequest,
        context: grpc.aio.ServicerContext[pb.BatchInvokeRequest, pb.BatchInvokeResponse],
    ) -> pb.BatchInvokeResponse:
        items = [BatchItem(i.name, i.qualifier, event_bytes(i)) for i in request.items]
        remaining = context.time_remaining()
        outcomes = await self._batch.invoke_all(
            current_principal(), items, remaining if remaining is not None else DEFAULT_DEADLINE_S
        )
        return pb.BatchInvokeResponse(results=[outcome_to_pb(o) for o in outcomes])
