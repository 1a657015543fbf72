"""gRPC adapter for nimbus.internal.v1.FunctionManager: decode, call the core, encode."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from nimbus.common.convert import alias_to_pb, config_from_pb, record_to_pb, version_to_pb
from nimbus.common.errors import NotFound
from nimbus.common.model import ConfigFields, is_config_field
from nimbus.funcmgr.functions import FunctionManager
from nimbus.funcmgr.stores.blobs import BlobStore
from nimbus.funcmgr.versions import VersionManager
from nimbus.internal.v1 import funcmgr_pb2, funcmgr_pb2_grpc, types_pb2


class FunctionManagerServicer(funcmgr_pb2_grpc.FunctionManagerServicer):
    def __init__(self, core: FunctionManager, versions: VersionManager, blobs: BlobStore) -> None:
        self._core = core
        self._versions = versions
        self._blobs = blobs

    async def CreateFunction(
        self,
        request: funcmgr_pb2.CreateFunctionRequest,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.CreateFunctionRequest, types_pb2.FunctionRecord
        ],
    ) -> types_pb2.FunctionRecord:
        record = await self._core.create(
            request.namespace, request.name, config_from_pb(request.config), request.code_zip
        )
        return record_to_pb(record)

    async def GetFunction(
        self,
        request: funcmgr_pb2.FunctionRef,
        context: grpc.aio.ServicerContext[funcmgr_pb2.FunctionRef, types_pb2.FunctionRecord],
    ) -> types_pb2.FunctionRecord:
        return record_to_pb(await self._core.get(request.namespace, request.name))

    async def ListFunctions(
        self,
        request: funcmgr_pb2.ListFunctionsRequest,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.ListFunctionsRequest, funcmgr_pb2.ListFunctionsResponse
        ],
    ) -> funcmgr_pb2.ListFunctionsResponse:
        records = await self._core.list(request.namespace)
        return funcmgr_pb2.ListFunctionsResponse(functions=[record_to_pb(r) for r in records])

    async def UpdateFunction(
        self,
        request: funcmgr_pb2.UpdateFunctionRequest,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.UpdateFunctionRequest, types_pb2.FunctionRecord
        ],
    ) -> types_pb2.FunctionRecord:
        config = config_from_pb(request.config)
        changes: ConfigFields = {}
        for name in request.update_mask:
            if is_config_field(name):
                changes[name] = getattr(config, name)
        record = await self._core.update_config(
            request.ref.namespace,
            request.ref.name,
            changes,
            request.replace_env,
            request.expected_revision,
        )
        return record_to_pb(record)

    async def UpdateFunctionCode(
        self,
        request: funcmgr_pb2.UpdateFunctionCodeRequest,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.UpdateFunctionCodeRequest, types_pb2.FunctionRecord
        ],
    ) -> types_pb2.FunctionRecord:
        record = await self._core.update_code(
            request.ref.namespace, request.ref.name, request.code_zip, request.expected_revision
        )
        return record_to_pb(record)

    async def DeleteFunction(
        self,
        request: funcmgr_pb2.FunctionRef,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.FunctionRef, funcmgr_pb2.DeleteFunctionResponse
        ],
    ) -> funcmgr_pb2.DeleteFunctionResponse:
        await self._core.delete(request.namespace, request.name)
        return funcmgr_pb2.DeleteFunctionResponse()

    async def FetchCode(
        self,
        request: funcmgr_pb2.FetchCodeRequest,
        context: grpc.aio.ServicerContext[funcmgr_pb2.FetchCodeRequest, funcmgr_pb2.CodeChunk],
    ) -> AsyncIterator[funcmgr_pb2.CodeChunk]:
        if not self._blobs.exists(request.code_sha256):
            raise NotFound(f"code package {request.code_sha256!r} not found")
        first = True
        async for chunk, total in self._blobs.read_chunks(request.code_sha256):
            yield funcmgr_pb2.CodeChunk(data=chunk, total_size=total if first else 0)
            first = False

    async def PublishVersion(
        self,
        request: funcmgr_pb2.PublishVersionRequest,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.PublishVersionRequest, types_pb2.VersionRecord
        ],
    ) -> types_pb2.VersionRecord:
        ref = request.ref
        return version_to_pb(
            await self._versions.publish(
                ref.namespace, ref.name, request.description, request.expected_revision
            )
        )

    async def GetVersion(
        self,
        request: funcmgr_pb2.VersionRef,
        context: grpc.aio.ServicerContext[funcmgr_pb2.VersionRef, types_pb2.VersionRecord],
    ) -> types_pb2.VersionRecord:
        return version_to_pb(
            await self._versions.get(request.ref.namespace, request.ref.name, request.version)
        )

    async def ListVersions(
        self,
        request: funcmgr_pb2.FunctionRef,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.FunctionRef, funcmgr_pb2.ListVersionsResponse
        ],
    ) -> funcmgr_pb2.ListVersionsResponse:
        versions = await self._versions.list(request.namespace, request.name)
        return funcmgr_pb2.ListVersionsResponse(versions=[version_to_pb(v) for v in versions])

    async def DeleteVersion(
        self,
        request: funcmgr_pb2.VersionRef,
        context: grpc.aio.ServicerContext[
            funcmgr_pb2.VersionRef, funcmgr_pb2.DeleteVersionResponse
        ],
    ) -> funcmgr_pb2.DeleteVersionResponse:
        await self._versions.delete(request.ref.namespace, request.ref.name, request.version)
        return funcmgr_pb2.DeleteVersionResponse()

    async def PutAlias(
        self,
        request: funcmgr_pb2.PutAliasRequest,
        context: grpc.aio.ServicerContext[funcmgr_pb2.PutAliasRequest, types_pb2.AliasRecord],
    ) -> types_pb2.AliasRecord:
        ref = request.ref
        alias = await self._versions.put_alias(
            ref.namespace,
            ref.name,
            request.alias,
            request.version,
            request.routing.version,
            request.routing.weight,
            request.description,
        )
        return alias_to_pb(alias)

    async def GetAlias(
        self,
        request: funcmgr_pb2.AliasRef,
        context: grpc.aio.ServicerContext[funcmgr_pb2.AliasRef, types_pb2.AliasRecord],
    ) -> types_pb2.AliasRecord:
        return alias_to_pb(
            await self._versions.get_alias(request.ref.namespace, request.ref.name, request.alias)
        )

    async def ListAliases(
        self,
        request: funcmgr_pb2.FunctionRef,
        context: grpc.aio.ServicerContext[funcmgr_pb2.FunctionRef, funcmgr_pb2.ListAliasesResponse],
    ) -> funcmgr_pb2.ListAliasesResponse:
        aliases = await self._versions.list_aliases(request.namespace, request.name)
        return funcmgr_pb2.ListAliasesResponse(aliases=[alias_to_pb(a) for a in aliases])

    async def DeleteAlias(
        self,
        request: funcmgr_pb2.AliasRef,
        context: grpc.aio.ServicerContext[funcmgr_pb2.AliasRef, funcmgr_pb2.DeleteAliasResponse],
    ) -> funcmgr_pb2.DeleteAliasResponse:
        await self._versions.delete_alias(request.ref.namespace, request.ref.name, request.alias)
        return funcmgr_pb2.DeleteAliasResponse()
