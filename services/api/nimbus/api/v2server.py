"""gRPC adapter for the public nimbus.api.v2.Functions service: the same core as v1 (server.py),
plus tags and paged lists (listing.py)."""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from nimbus.api import server as v1
from nimbus.api.code import CodeApi
from nimbus.api.functions import FunctionsApi
from nimbus.api.listing import Listing
from nimbus.api.v2 import functions_pb2 as pb
from nimbus.api.v2 import functions_pb2_grpc
from nimbus.common.auth import current_principal
from nimbus.common.errors import InvalidArgument
from nimbus.common.model import ConfigFields, FunctionRecord, VersionRecord


def function_to_pb(record: FunctionRecord) -> pb.Function:
    return pb.Function(**v1.function_fields(record), tags=record.config.tags)


def version_to_pb(record: VersionRecord) -> pb.Version:
    config = function_to_pb(v1.version_as_function(record))
    return pb.Version(
        version=record.version,
        description=record.description,
        code_sha256=record.code_sha256,
        config=config,
        created_at=record.created_at,
    )


def create_fields(request: pb.CreateFunctionRequest) -> ConfigFields:
    fields = v1.create_fields(request)
    fields["tags"] = dict(request.tags)
    return fields


def tag_filter(pairs: Iterable[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"tag: {pair!r} must be key=value")
        out[key] = value
    return out


def update_changes(request: pb.UpdateFunctionRequest) -> ConfigFields:
    changes = v1.update_changes(request)
    if request.HasField("tags"):
        changes["tags"] = dict(request.tags.tags)
    return changes


class FunctionsV2Servicer(functions_pb2_grpc.FunctionsServicer):
    def __init__(self, functions: FunctionsApi, listing: Listing, code: CodeApi) -> None:
        self._functions = functions
        self._listing = listing
        self._code = code

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
        page = await self._listing.functions(
            current_principal(), request.page_size, request.page_token, tag_filter(request.tag)
        )
        return pb.ListFunctionsResponse(
            functions=[function_to_pb(r) for r in page.items], next_page_token=page.next_token
        )

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

    async def DeleteFunction(
        self,
        request: pb.DeleteFunctionRequest,
        context: grpc.aio.ServicerContext[pb.DeleteFunctionRequest, pb.DeleteFunctionResponse],
    ) -> pb.DeleteFunctionResponse:
        await self._functions.delete(current_principal(), request.name)
        return pb.DeleteFunctionResponse()

    async def ListVersions(
        self,
        request: pb.ListVersionsRequest,
        context: grpc.aio.ServicerContext[pb.ListVersionsRequest, pb.ListVersionsResponse],
    ) -> pb.ListVersionsResponse:
        page = await self._listing.versions(
            current_principal(), request.name, request.page_size, request.page_token
        )
        return pb.ListVersionsResponse(
            versions=[version_to_pb(v) for v in page.items], next_page_token=page.next_token
        )

    async def GetFunctionCode(
        self,
        request: pb.GetFunctionCodeRequest,
        context: grpc.aio.ServicerContext[pb.GetFunctionCodeRequest, pb.FunctionCode],
    ) -> pb.FunctionCode:
        code = await self._code.get(
            current_principal(), request.name, request.qualifier, request.format
        )
        return pb.FunctionCode(**v1.code_fields(code))
