"""gRPC adapter for the public nimbus.api.v1.Invocations service (the sync data path)."""

from __future__ import annotations

import base64

import grpc
from google.api import httpbody_pb2

from nimbus.api.v1 import invocations_pb2, invocations_pb2_grpc
from nimbus.common.auth import current_principal
from nimbus.common.errors import InvalidArgument
from nimbus.internal.v1 import invoker_pb2, invoker_pb2_grpc
from nimbus.invoker.dispatcher import Dispatcher
from nimbus.invoker.invoke import Invoker

_JSON = "application/json"
_DEFAULT_DEADLINE_S = 900.0


class InvocationsServicer(invocations_pb2_grpc.InvocationsServicer):
    def __init__(self, invoker: Invoker) -> None:
        self._invoker = invoker

    async def Invoke(self, request: invocations_pb2.InvokeRequest, context: grpc.aio.ServicerContext) -> httpbody_pb2.HttpBody:
        body = request.body
        remaining = context.time_remaining()
        deadline_s = remaining if remaining is not None else _DEFAULT_DEADLINE_S
        mode = request.log.lower()
        if mode not in ("", "none", "tail"):
            raise InvalidArgument(f"log: {request.log!r} must be 'tail', 'none' or left out")
        wants_tail = mode == "tail"
        result = await self._invoker.invoke(
            current_principal(), request.name, request.qualifier, body.data, deadline_s, wants_tail
        )
        metadata = [
            ("x-nimbus-request-id", result.request_id),
            ("x-nimbus-cold-start", "true" if result.cold_start else "false"),
            ("x-nimbus-billed-ms", str(result.billed_ms)),
            ("x-nimbus-executed-version", result.executed_version),
            # The handler's own run time as the instance measured it: end-to-end minus this is
            # the platform's overhead.
            ("x-nimbus-duration-us", str(result.duration_us)),
        ]
        if wants_tail:
            metadata.append(("x-nimbus-log-tail", base64.b64encode(result.log_tail).decode()))
        if result.cold_start and result.init_duration_us:
            metadata.append(("x-nimbus-init-duration-us", str(result.init_duration_us)))
        if result.function_error:
            metadata.append(("x-nimbus-function-error", result.function_error))
        await context.send_initial_metadata(metadata)
        return httpbody_pb2.HttpBody(content_type=_JSON, data=result.payload)


class InvokerControlServicer(invoker_pb2_grpc.InvokerControlServicer):
    def __init__(self, dispatcher: Dispatcher) -> None:
        self._dispatcher = dispatcher

    async def GetStats(self, request: invoker_pb2.GetStatsRequest, context: grpc.aio.ServicerContext) -> invoker_pb2.GetStatsResponse:
        stats = [
            invoker_pb2.FunctionQueueStats(
                namespace=key.namespace,
                function=key.function,
                version=key.version,
                queued=sum(1 for w in pool.waiters if not w.done()),
                in_flight=len(pool.busy),
                instances=len(pool.instances),
            )
            for key, pool in self._dispatcher.pools().items()
        ]
        return invoker_pb2.GetStatsResponse(functions=stats)
