"""gRPC adapter for the async RPCs of nimbus.api.v1.Invocations: InvokeAsync, GetInvocation,
ListDeadLetters, ReplayDeadLetters. It extends the sync adapter (sync/server.py) with these
methods."""

from __future__ import annotations

import grpc
from nimbus.api.v1 import invocations_pb2 as pb
from nimbus.common import tracing
from nimbus.common.auth import current_principal
from nimbus.invoker.events.envelope import DeadLetter
from nimbus.invoker.events.invocations import AsyncInvocations
from nimbus.invoker.events.records import InvocationRecord
from nimbus.invoker.sync.invoke import Invoker
from nimbus.invoker.sync.replyheaders import IDEMPOTENCY_HEADER
from nimbus.invoker.sync.server import InvocationsServicer


def _metadata(
    context: grpc.aio.ServicerContext[pb.InvokeAsyncRequest, pb.InvokeAsyncResponse], name: str
) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return ""


def invocation_to_pb(record: InvocationRecord) -> pb.Invocation:
    return pb.Invocation(
        invocation_id=record.invocation_id,
        function=record.function,
        version=record.version,
        status=record.status,
        attempts=record.attempts,
        result_json=record.result_json,
        error_json=record.error_json,
        created_at=record.created_at,
        updated_at=record.updated_at,
        qualifier=record.qualifier,
        request_id=record.request_id,
        result_size=record.result_size,
        error_size=record.error_size,
    )


def dead_letter_to_pb(letter: DeadLetter) -> pb.DeadLetter:
    return pb.DeadLetter(
        invocation_id=letter.invocation_id,
        function=letter.function,
        qualifier=letter.qualifier,
        event_json=letter.event.decode(errors="replace"),
        error_json=letter.error.decode(errors="replace"),
        attempts=letter.attempts,
        created_at=letter.created_at,
        failed_at=letter.failed_at,
        reason=letter.reason,
    )


class AsyncInvocationsServicer(InvocationsServicer):
    def __init__(self, invoker: Invoker, async_invocations: AsyncInvocations) -> None:
        super().__init__(invoker)
        self._async = async_invocations

    async def InvokeAsync(
        self,
        request: pb.InvokeAsyncRequest,
        context: grpc.aio.ServicerContext[pb.InvokeAsyncRequest, pb.InvokeAsyncResponse],
    ) -> pb.InvokeAsyncResponse:
        key = _metadata(context, IDEMPOTENCY_HEADER)
        invocation_id = await self._async.submit(
            current_principal(), request.name, request.qualifier, request.body.data, key
        )
        await context.send_initial_metadata(
            ((tracing.TRACE_ID_HEADER, tracing.current_trace_id()),)
        )
        return pb.InvokeAsyncResponse(invocation_id=invocation_id)

    async def GetInvocation(
        self,
        request: pb.GetInvocationRequest,
        context: grpc.aio.ServicerContext[pb.GetInvocationRequest, pb.Invocation],
    ) -> pb.Invocation:
        return invocation_to_pb(await self._async.get(current_principal(), request.id))

    async def ListDeadLetters(
        self,
        request: pb.ListDeadLettersRequest,
        context: grpc.aio.ServicerContext[pb.ListDeadLettersRequest, pb.ListDeadLettersResponse],
    ) -> pb.ListDeadLettersResponse:
        letters, truncated = await self._async.dead_letters(
            current_principal(), request.name, request.limit
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[dead_letter_to_pb(dl) for dl in letters], truncated=truncated
        )

    async def ReplayDeadLetters(
        self,
        request: pb.ReplayDeadLettersRequest,
        context: grpc.aio.ServicerContext[
            pb.ReplayDeadLettersRequest, pb.ReplayDeadLettersResponse
        ],
    ) -> pb.ReplayDeadLettersResponse:
        ids = await self._async.replay(
            current_principal(), request.name, list(request.invocation_ids)
        )
        return pb.ReplayDeadLettersResponse(invocation_ids=ids)
