"""gRPC adapter for the public nimbus.api.v1.Invocations service (the sync data path)."""

from __future__ import annotations

from typing import TypeVar

import grpc

# googleapis-common-protos ships .pyi files but no py.typed marker.
from google.api import httpbody_pb2  # type: ignore[import-untyped, unused-ignore]
from nimbus.api.v1 import invocations_pb2, invocations_pb2_grpc
from nimbus.common.auth import current_principal
from nimbus.internal.v1 import invoker_pb2, invoker_pb2_grpc
from nimbus.invoker.sync.dispatcher import Dispatcher
from nimbus.invoker.sync.invoke import Invoker
from nimbus.invoker.sync.replyheaders import DEFAULT_DEADLINE_S, reply_headers, wants_log_tail

_JSON = "application/json"
# The request type of a context: v2's Invoke hands its own on to v1's.
_Request = TypeVar("_Request")


class InvocationsServicer(invocations_pb2_grpc.InvocationsServicer):
    def __init__(self, invoker: Invoker) -> None:
        self._invoker = invoker

    async def Invoke(
        self,
        request: invocations_pb2.InvokeRequest,
        context: grpc.aio.ServicerContext[_Request, httpbody_pb2.HttpBody],
    ) -> httpbody_pb2.HttpBody:
        remaining = context.time_remaining()
        deadline_s = remaining if remaining is not None else DEFAULT_DEADLINE_S
        log_tail = wants_log_tail(request.log)
        result = await self._invoker.invoke(
            current_principal(),
            request.name,
            request.qualifier,
            request.body.data,
            deadline_s,
            log_tail,
        )
        await context.send_initial_metadata(reply_headers(result, log_tail))
        return httpbody_pb2.HttpBody(content_type=_JSON, data=result.payload)


class InvokerControlServicer(invoker_pb2_grpc.InvokerControlServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def GetStats(
        self,
        request: invoker_pb2.GetStatsRequest,
        context: grpc.aio.ServicerContext[
            invoker_pb2.GetStatsRequest, invoker_pb2.GetStatsResponse
        ],
    ) -> invoker_pb2.GetStatsResponse:
        stats = [
            invoker_pb2.FunctionQueueStats(
                namespace=key.namespace,
                function=key.function,
                version=key.version,
                queued=sum(1 for w in pool.waiters if not w.done()),
                in_flight=pool.in_flight,
                instances=len(pool.instances),
            )
            for key, pool in self._dispatcher.pools().items()
        ]
        return invoker_pb2.GetStatsResponse(functions=stats)
