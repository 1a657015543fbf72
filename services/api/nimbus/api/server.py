"""gRPC adapter for the public nimbus.api.v1.Functions service.

RPCs this version does not implement yet are left to the generated base class (UNIMPLEMENTED).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TypedDict

import grpc
from nimbus.api.apikeys import KeyIssuer
from nimbus.api.code import CodeApi, FunctionCode
from nimbus.api.functions import FunctionsApi
from nimbus.api.logs import LogLine, LogsApi
from nimbus.api.metrics import MetricsApi, MinuteMetrics
from nimbus.api.quotas import QuotasApi
from nimbus.api.usage import Usage, UsageApi, gb_seconds
from nimbus.api.v1 import functions_pb2 as pb
from nimbus.api.v1 import functions_pb2_grpc
from nimbus.api.v2 import functions_pb2 as pb2
from nimbus.api.versions import VersionsApi
from nimbus.common.auth import KeyRecord, current_principal
from nimbus.common.clock import iso
from nimbus.common.errors import InvalidArgument, TooLarge
from nimbus.common.model import (
    AliasRecord,
    ConfigField,
    ConfigFields,
    FunctionRecord,
    VersionRecord,
)
from nimbus.common.quotas import Quotas

_OPTIONAL_INTS: tuple[ConfigField, ...] = (
    "memory_mb",
    "timeout_s",
    "max_concurrency",
    "min_instances",
    "keep_alive_s",
    "instance_concurrency",
)


class FunctionFields(TypedDict):
    """The fields v1's Function shares with every later version's, as keyword arguments."""

    name: str
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    env: dict[str, str]
    description: str
    max_concurrency: int
    min_instances: int
    keep_alive_s: int
    instance_concurrency: int
    namespace: str
    code_sha256: str
    code_size: int
    revision: int
    created_at: str
    updated_at: str
    warnings: list[str]


def function_fields(record: FunctionRecord) -> FunctionFields:
    """The fields v1's Function shares with every later version's (they only add)."""
    c = record.config
    return FunctionFields(
        name=record.name,
        runtime=c.runtime,
        handler=c.handler,
        memory_mb=c.memory_mb,
        timeout_s=c.timeout_s,
        env=c.env,
        description=c.description,
        max_concurrency=c.max_concurrency,
        min_instances=c.min_instances,
        keep_alive_s=c.keep_alive_s,
        instance_concurrency=c.instance_concurrency,
        namespace=record.namespace,
        code_sha256=record.code_sha256,
        code_size=record.code_size,
        revision=record.revision,
        created_at=record.created_at,
        updated_at=record.updated_at,
        warnings=list(record.warnings),
    )


def version_as_function(record: VersionRecord) -> FunctionRecord:
    """A version shown as the function it snapshots (its config in API responses)."""
    return FunctionRecord(
        record.namespace,
        record.name,
        record.config,
        record.code_sha256,
        record.code_size,
        record.created_at,
        record.created_at,
        record.revision,
    )


def function_to_pb(record: FunctionRecord) -> pb.Function:
    return pb.Function(**function_fields(record))


def version_to_pb(record: VersionRecord) -> pb.Version:
    config = function_to_pb(version_as_function(record))
    return pb.Version(
        version=record.version,
        description=record.description,
        code_sha256=record.code_sha256,
        config=config,
        created_at=record.created_at,
    )


def alias_to_pb(record: AliasRecord) -> pb.Alias:
    return pb.Alias(
        name=record.name,
        alias=record.alias,
        version=record.version,
        routing=pb.AliasRouting(version=record.routing_version, weight=record.routing_weight),
        description=record.description,
        revision=record.revision,
    )


def key_to_pb(record: KeyRecord, api_key: str = "") -> pb.ApiKey:
    return pb.ApiKey(
        api_key=api_key,
        key_id=record.key_id,
        namespace=record.namespace,
        admin=record.admin,
        description=record.description,
        created_at=record.created_at,
    )


def minute_to_pb(m: MinuteMetrics) -> pb.MetricsBucket:
    return pb.MetricsBucket(
        start=iso(m.start),
        invocations=m.invocations,
        errors=m.errors,
        throttles=m.throttles,
        duration_p50_ms=m.duration_p50_ms,
        duration_p90_ms=m.duration_p90_ms,
        duration_p99_ms=m.duration_p99_ms,
        cold_starts=m.cold_starts,
        duration_avg_ms=m.duration_avg_ms,
        init_duration_avg_ms=m.init_duration_avg_ms,
        max_memory_used_mb=m.max_memory_used_mb,
    )


def usage_to_pb(usage: Usage) -> pb.GetUsageResponse:
    rows = [
        pb.UsageRow(
            namespace=usage.namespace,
            function=r.function,
            version=r.version,
            day=r.day,
            requests=r.requests,
            gb_seconds=r.gb_seconds,
            billed_mb_ms=r.mb_ms,
        )
        for r in usage.rows
    ]
    total = usage.total_mb_ms
    return pb.GetUsageResponse(
        rows=rows,
        to=usage.last.isoformat(),
        total_requests=usage.total_requests,
        total_gb_seconds=gb_seconds(total),
        total_billed_mb_ms=total,
        **{"from": usage.first.isoformat()},
    )


def log_line_to_pb(line: LogLine) -> pb.LogLine:
    return pb.LogLine(
        timestamp=line.timestamp,
        request_id=line.request_id,
        stream=line.stream,
        message=line.message,
        version=line.version,
    )


def code_to_pb(code: FunctionCode) -> pb.FunctionCode:
    return pb.FunctionCode(**code_fields(code))


class CodeFields(TypedDict):
    """FunctionCode's fields in every API version (v2's message is v1's)."""

    name: str
    version: str
    code_sha256: str
    code_size: int
    zip_base64: bytes
    files: list[dict[str, object]]
    revision: int
    runtime: str
    handler: str


def code_fields(code: FunctionCode) -> CodeFields:
    return CodeFields(
        name=code.name,
        version=code.version,
        code_sha256=code.code_sha256,
        code_size=code.code_size,
        zip_base64=code.zip_bytes,
        files=[
            {"path": f.path, "size": f.size, "content": f.content, "omitted": f.omitted}
            for f in code.files
        ],
        revision=code.revision,
        runtime=code.runtime,
        handler=code.handler,
    )


def update_changes(request: pb.UpdateFunctionRequest | pb2.UpdateFunctionRequest) -> ConfigFields:
    """The fields a PATCH sets. Works on any API version's request: later versions only add."""
    changes: ConfigFields = {}
    names: tuple[ConfigField, ...] = ("runtime", "handler", "description", *_OPTIONAL_INTS)
    for name in names:
        if request.HasField(name):
            changes[name] = getattr(request, name)
    if request.env or request.replace_env:
        changes["env"] = dict(request.env)
    return changes


def create_fields(request: pb.CreateFunctionRequest | pb2.CreateFunctionRequest) -> ConfigFields:
    """The fields a create gives. Works on any API version's request: later versions only add."""
    fields: ConfigFields = {
        "runtime": request.runtime,
        "handler": request.handler,
        "env": dict(request.env),
        "description": request.description,
    }
    for name in _OPTIONAL_INTS:
        if request.HasField(name):
            fields[name] = getattr(request, name)
    return fields


def quotas_from_pb(q: pb.NamespaceQuotas) -> Quotas:
    return Quotas(
        namespace=q.namespace,
        max_functions=q.max_functions,
        max_warm_mb=q.max_warm_mb,
        max_concurrency=q.max_concurrency,
        max_async_backlog=q.max_async_backlog,
    )


def quotas_to_pb(q: Quotas) -> pb.NamespaceQuotas:
    return pb.NamespaceQuotas(
        namespace=q.namespace,
        max_functions=q.max_functions,
        max_warm_mb=q.max_warm_mb,
        max_concurrency=q.max_concurrency,
        max_async_backlog=q.max_async_backlog,
        updated_at=q.updated_at,
    )


class FunctionsServicer(functions_pb2_grpc.FunctionsServicer):
    def __init__(
        self,
        functions: FunctionsApi,
        versions: VersionsApi,
        keys: KeyIssuer,
        max_zip_bytes: int,
        *,
        metrics: MetricsApi,
        usage: UsageApi,
        logs: LogsApi,
        quotas: QuotasApi,
        code: CodeApi,
    ) -> None:
        self._quotas = quotas
        self._code = code
        self._functions = functions
        self._versions = versions
        self._keys = keys
        self._max_zip_bytes = max_zip_bytes
        self._metrics = metrics
        self._usage = usage
        self._logs = logs

    async def CreateFunction(
        self,
        request: pb.CreateFunctionRequest,
        context: grpc.aio.ServicerContext[pb.CreateFunctionRequest, pb.Function],
    ) -> pb.Function:
        record = await self._functions.create(
            current_principal(), request.name, create_fields(request), request.code.zip_base64
        )
        return function_to_pb(record)

    async def GetFunction(
        self,
        request: pb.GetFunctionRequest,
        context: grpc.aio.ServicerContext[pb.GetFunctionRequest, pb.Function],
    ) -> pb.Function:
        return function_to_pb(await self._functions.get(current_principal(), request.name))

    async def ListFunctions(
        self,
        request: pb.ListFunctionsRequest,
        context: grpc.aio.ServicerContext[pb.ListFunctionsRequest, pb.ListFunctionsResponse],
    ) -> pb.ListFunctionsResponse:
        records = await self._functions.list(current_principal())
        return pb.ListFunctionsResponse(functions=[function_to_pb(r) for r in records])

    async def UpdateFunction(
        self,
        request: pb.UpdateFunctionRequest,
        context: grpc.aio.ServicerContext[pb.UpdateFunctionRequest, pb.Function],
    ) -> pb.Function:
        record = await self._functions.update_config(
            current_principal(),
            request.name,
            update_changes(request),
            request.replace_env,
            request.expected_revision,
        )
        return function_to_pb(record)

    async def UpdateFunctionCode(
        self,
        request: pb.UpdateFunctionCodeRequest,
        context: grpc.aio.ServicerContext[pb.UpdateFunctionCodeRequest, pb.Function],
    ) -> pb.Function:
        record = await self._functions.update_code(
            current_principal(), request.name, request.code.zip_base64, request.expected_revision
        )
        return function_to_pb(record)

    async def DeleteFunction(
        self,
        request: pb.DeleteFunctionRequest,
        context: grpc.aio.ServicerContext[pb.DeleteFunctionRequest, pb.DeleteFunctionResponse],
    ) -> pb.DeleteFunctionResponse:
        await self._functions.delete(current_principal(), request.name)
        return pb.DeleteFunctionResponse()

    async def GetFunctionCode(
        self,
        request: pb.GetFunctionCodeRequest,
        context: grpc.aio.ServicerContext[pb.GetFunctionCodeRequest, pb.FunctionCode],
    ) -> pb.FunctionCode:
        code = await self._code.get(
            current_principal(), request.name, request.qualifier, request.format
        )
        return code_to_pb(code)

    async def UploadCode(
        self,
        request_iterator: AsyncIterator[pb.UploadCodeRequest],
        context: grpc.aio.ServicerContext[pb.UploadCodeRequest, pb.Function],
    ) -> pb.Function:
        first: pb.UploadCodeRequest | None = None
        chunks: list[bytes] = []
        size = 0
        async for message in request_iterator:
            if first is None:
                if not message.WhichOneof("target"):
                    raise InvalidArgument(
                        "target: the first message must carry `create` or `update`"
                    )
                first = message
            size += len(message.chunk)
            if size > self._max_zip_bytes:
                raise TooLarge(
                    f"code: the package is over the limit of "
                    f"{self._max_zip_bytes / 1048576:g} MiB zipped (NIMBUS_MAX_ZIP_MB)"
                )
            chunks.append(message.chunk)
        if first is None:
            raise InvalidArgument("target: the upload sent no message")
        code = b"".join(chunks)
        who = current_principal()
        if first.WhichOneof("target") == "create":
            record = await self._functions.create(
                who, first.create.name, create_fields(first.create), code
            )
        else:
            record = await self._functions.update_code(
                who, first.update.name, code, first.update.expected_revision
            )
        return function_to_pb(record)

    async def PublishVersion(
        self,
        request: pb.PublishVersionRequest,
        context: grpc.aio.ServicerContext[pb.PublishVersionRequest, pb.Version],
    ) -> pb.Version:
        record = await self._versions.publish(
            current_principal(), request.name, request.description, request.expected_revision
        )
        return version_to_pb(record)

    async def GetVersion(
        self,
        request: pb.GetVersionRequest,
        context: grpc.aio.ServicerContext[pb.GetVersionRequest, pb.Version],
    ) -> pb.Version:
        return version_to_pb(
            await self._versions.get(current_principal(), request.name, request.version)
        )

    async def ListVersions(
        self,
        request: pb.ListVersionsRequest,
        context: grpc.aio.ServicerContext[pb.ListVersionsRequest, pb.ListVersionsResponse],
    ) -> pb.ListVersionsResponse:
        versions = await self._versions.list(current_principal(), request.name)
        return pb.ListVersionsResponse(versions=[version_to_pb(v) for v in versions])

    async def DeleteVersion(
        self,
        request: pb.DeleteVersionRequest,
        context: grpc.aio.ServicerContext[pb.DeleteVersionRequest, pb.DeleteVersionResponse],
    ) -> pb.DeleteVersionResponse:
        await self._versions.delete(current_principal(), request.name, request.version)
        return pb.DeleteVersionResponse()

    async def PutAlias(
        self,
        request: pb.PutAliasRequest,
        context: grpc.aio.ServicerContext[pb.PutAliasRequest, pb.Alias],
    ) -> pb.Alias:
        alias = await self._versions.put_alias(
            current_principal(),
            request.name,
            request.alias,
            request.version,
            request.routing.version,
            request.routing.weight,
            request.description,
        )
        return alias_to_pb(alias)

    async def GetAlias(
        self,
        request: pb.GetAliasRequest,
        context: grpc.aio.ServicerContext[pb.GetAliasRequest, pb.Alias],
    ) -> pb.Alias:
        return alias_to_pb(
            await self._versions.get_alias(current_principal(), request.name, request.alias)
        )

    async def ListAliases(
        self,
        request: pb.ListAliasesRequest,
        context: grpc.aio.ServicerContext[pb.ListAliasesRequest, pb.ListAliasesResponse],
    ) -> pb.ListAliasesResponse:
        aliases = await self._versions.list_aliases(current_principal(), request.name)
        return pb.ListAliasesResponse(aliases=[alias_to_pb(a) for a in aliases])

    async def DeleteAlias(
        self,
        request: pb.DeleteAliasRequest,
        context: grpc.aio.ServicerContext[pb.DeleteAliasRequest, pb.DeleteAliasResponse],
    ) -> pb.DeleteAliasResponse:
        await self._versions.delete_alias(current_principal(), request.name, request.alias)
        return pb.DeleteAliasResponse()

    async def GetMetrics(
        self,
        request: pb.GetMetricsRequest,
        context: grpc.aio.ServicerContext[pb.GetMetricsRequest, pb.GetMetricsResponse],
    ) -> pb.GetMetricsResponse:
        minutes = await self._metrics.get(current_principal(), request.name, request.minutes)
        return pb.GetMetricsResponse(buckets=[minute_to_pb(m) for m in minutes])

    async def GetLogs(
        self,
        request: pb.GetLogsRequest,
        context: grpc.aio.ServicerContext[pb.GetLogsRequest, pb.GetLogsResponse],
    ) -> pb.GetLogsResponse:
        lines, truncated = await self._logs.get(
            current_principal(),
            request.name,
            request.request_id,
            request.since,
            request.until,
            request.limit,
        )
        return pb.GetLogsResponse(
            lines=[log_line_to_pb(line) for line in lines], truncated=truncated
        )

    async def TailLogs(
        self,
        request: pb.TailLogsRequest,
        context: grpc.aio.ServicerContext[pb.TailLogsRequest, pb.LogLine],
    ) -> AsyncIterator[pb.LogLine]:
        async for line in self._logs.tail(
            current_principal(), request.name, request.request_id, request.since
        ):
            yield log_line_to_pb(line)

    async def GetUsage(
        self,
        request: pb.GetUsageRequest,
        context: grpc.aio.ServicerContext[pb.GetUsageRequest, pb.GetUsageResponse],
    ) -> pb.GetUsageResponse:
        # `from` is a Python keyword, hence getattr.
        return usage_to_pb(
            await self._usage.get(current_principal(), getattr(request, "from"), request.to)
        )

    async def CreateKey(
        self,
        request: pb.CreateKeyRequest,
        context: grpc.aio.ServicerContext[pb.CreateKeyRequest, pb.ApiKey],
    ) -> pb.ApiKey:
        issued = await self._keys.create(
            current_principal(), request.namespace, request.description, request.admin
        )
        return key_to_pb(issued.record, issued.api_key)

    async def ListKeys(
        self,
        request: pb.ListKeysRequest,
        context: grpc.aio.ServicerContext[pb.ListKeysRequest, pb.ListKeysResponse],
    ) -> pb.ListKeysResponse:
        return pb.ListKeysResponse(
            keys=[key_to_pb(r) for r in await self._keys.list(current_principal())]
        )

    async def RevokeKey(
        self,
        request: pb.RevokeKeyRequest,
        context: grpc.aio.ServicerContext[pb.RevokeKeyRequest, pb.RevokeKeyResponse],
    ) -> pb.RevokeKeyResponse:
        await self._keys.revoke(current_principal(), request.key_id)
        return pb.RevokeKeyResponse()

    async def PutQuotas(
        self,
        request: pb.NamespaceQuotas,
        context: grpc.aio.ServicerContext[pb.NamespaceQuotas, pb.NamespaceQuotas],
    ) -> pb.NamespaceQuotas:
        quotas = await self._quotas.put(current_principal(), quotas_from_pb(request))
        return quotas_to_pb(quotas)

    async def GetQuotas(
        self,
        request: pb.GetQuotasRequest,
        context: grpc.aio.ServicerContext[pb.GetQuotasRequest, pb.NamespaceQuotas],
    ) -> pb.NamespaceQuotas:
        return quotas_to_pb(await self._quotas.get(current_principal(), request.namespace))
