"""gRPC adapter for the trigger and event-config RPCs of nimbus.api.v1.Functions; it extends the
adapter of the other Functions RPCs (server.py)."""

from __future__ import annotations

import grpc
from nimbus.api.apikeys import KeyIssuer
from nimbus.api.code import CodeApi
from nimbus.api.functions import FunctionsApi
from nimbus.api.logs import LogsApi
from nimbus.api.metrics import MetricsApi
from nimbus.api.quotas import QuotasApi
from nimbus.api.server import FunctionsServicer
from nimbus.api.triggers import TriggersApi
from nimbus.api.usage import UsageApi
from nimbus.api.v1 import functions_pb2 as pb
from nimbus.api.versions import VersionsApi
from nimbus.common.auth import current_principal
from nimbus.common.eventconfig import Destination, EventConfig
from nimbus.common.triggers import TriggerRecord, TriggerType


def trigger_to_pb(record: TriggerRecord) -> pb.Trigger:
    return pb.Trigger(
        id=record.trigger_id,
        name=record.function,
        type=record.type,
        schedule=record.schedule,
        subject=record.subject,
        qualifier=record.qualifier,
        created_at=record.created_at,
        url=record.url,
        payload_format=record.format.value if record.type == TriggerType.HTTP else "",
    )


def _destination_to_pb(dest: Destination) -> pb.EventDestination:
    return pb.EventDestination(function=dest.function, subject=dest.subject)


def event_config_to_pb(config: EventConfig) -> pb.EventInvokeConfig:
    msg = pb.EventInvokeConfig(
        name=config.function,
        on_success=_destination_to_pb(config.on_success),
        on_failure=_destination_to_pb(config.on_failure),
        updated_at=config.updated_at,
    )
    if config.max_retries is not None:
        msg.max_retries = config.max_retries
    if config.max_event_age_s is not None:
        msg.max_event_age_s = config.max_event_age_s
    return msg


def event_config_from_pb(msg: pb.EventInvokeConfig) -> EventConfig:
    return EventConfig(
        namespace="",
        function=msg.name,
        max_retries=msg.max_retries if msg.HasField("max_retries") else None,
        max_event_age_s=msg.max_event_age_s if msg.HasField("max_event_age_s") else None,
        on_success=Destination(msg.on_success.function.strip(), msg.on_success.subject.strip()),
        on_failure=Destination(msg.on_failure.function.strip(), msg.on_failure.subject.strip()),
    )


class FunctionsAndTriggersServicer(FunctionsServicer):
    def __init__(
        self,
        functions: FunctionsApi,
        versions: VersionsApi,
        keys: KeyIssuer,
        max_zip_bytes: int,
        *,
        triggers: TriggersApi,
        metrics: MetricsApi,
        usage: UsageApi,
        logs: LogsApi,
        quotas: QuotasApi,
        code: CodeApi,
    ) -> None:
        super().__init__(
            functions,
            versions,
            keys,
            max_zip_bytes,
            metrics=metrics,
            usage=usage,
            logs=logs,
            quotas=quotas,
            code=code,
        )
        self._triggers = triggers

    async def CreateTrigger(
        self,
        request: pb.CreateTriggerRequest,
        context: grpc.aio.ServicerContext[pb.CreateTriggerRequest, pb.Trigger],
    ) -> pb.Trigger:
        record = await self._triggers.create(
            current_principal(),
            request.name,
            request.type,
            request.schedule,
            request.subject,
            request.qualifier,
            request.payload_format,
        )
        return trigger_to_pb(record)

    async def ListTriggers(
        self,
        request: pb.ListTriggersRequest,
        context: grpc.aio.ServicerContext[pb.ListTriggersRequest, pb.ListTriggersResponse],
    ) -> pb.ListTriggersResponse:
        records = await self._triggers.list(current_principal(), request.name)
        return pb.ListTriggersResponse(triggers=[trigger_to_pb(r) for r in records])

    async def GetTrigger(
        self,
        request: pb.GetTriggerRequest,
        context: grpc.aio.ServicerContext[pb.GetTriggerRequest, pb.Trigger],
    ) -> pb.Trigger:
        return trigger_to_pb(
            await self._triggers.get(current_principal(), request.name, request.id)
        )

    async def DeleteTrigger(
        self,
        request: pb.DeleteTriggerRequest,
        context: grpc.aio.ServicerContext[pb.DeleteTriggerRequest, pb.DeleteTriggerResponse],
    ) -> pb.DeleteTriggerResponse:
        await self._triggers.delete(current_principal(), request.name, request.id)
        return pb.DeleteTriggerResponse()

    async def PutEventInvokeConfig(
        self,
        request: pb.EventInvokeConfig,
        context: grpc.aio.ServicerContext[pb.EventInvokeConfig, pb.EventInvokeConfig],
    ) -> pb.EventInvokeConfig:
        stored = await self._triggers.put_event_config(
            current_principal(), request.name, event_config_from_pb(request)
        )
        return event_config_to_pb(stored)

    async def GetEventInvokeConfig(
        self,
        request: pb.GetEventInvokeConfigRequest,
        context: grpc.aio.ServicerContext[pb.GetEventInvokeConfigRequest, pb.EventInvokeConfig],
    ) -> pb.EventInvokeConfig:
        return event_config_to_pb(
            await self._triggers.get_event_config(current_principal(), request.name)
        )

    async def DeleteEventInvokeConfig(
        self,
        request: pb.DeleteEventInvokeConfigRequest,
        context: grpc.aio.ServicerContext[
            pb.DeleteEventInvokeConfigRequest, pb.DeleteEventInvokeConfigResponse
        ],
    ) -> pb.DeleteEventInvokeConfigResponse:
        await self._triggers.delete_event_config(current_principal(), request.name)
        return pb.DeleteEventInvokeConfigResponse()
