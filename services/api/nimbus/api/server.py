"""gRPC adapter for the public nimbus.api.v1.Functions service.

RPCs this version does not implement yet are left to the generated base class (UNIMPLEMENTED).
"""

from __future__ import annotations

import grpc

from nimbus.api.apikeys import KeyIssuer
from nimbus.api.functions import FunctionsApi
from nimbus.api.v1 import functions_pb2 as pb
from nimbus.api.v1 import functions_pb2_grpc
from nimbus.common.auth import current_principal
from nimbus.common.model import FunctionRecord

_OPTIONAL_INTS = ("memory_mb", "timeout_s", "max_concurrency", "min_instances")


def function_to_pb(record: FunctionRecord) -> pb.Function:
    c = record.config
    return pb.Function(
        name=record.name,
        runtime=c.runtime,
        handler=c.handler,
        memory_mb=c.memory_mb,
        timeout_s=c.timeout_s,
        env=c.env,
        description=c.description,
        max_concurrency=c.max_concurrency,
        min_instances=c.min_instances,
        namespace=record.namespace,
        code_sha256=record.code_sha256,
        code_size=record.code_size,
        revision=record.revision,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


class FunctionsServicer(functions_pb2_grpc.FunctionsServicer):
    def __init__(self, functions: FunctionsApi, keys: KeyIssuer) -> None:
        self._functions = functions
        self._keys = keys

    async def CreateFunction(self, request: pb.CreateFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Function:
        fields: dict[str, object] = {
            "runtime": request.runtime,
            "handler": request.handler,
            "env": dict(request.env),
            "description": request.description,
        }
        for name in _OPTIONAL_INTS:
            if request.HasField(name):
                fields[name] = getattr(request, name)
        record = await self._functions.create(current_principal(), request.name, fields, request.code.zip_base64)
        return function_to_pb(record)

    async def GetFunction(self, request: pb.GetFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Function:
        return function_to_pb(await self._functions.get(current_principal(), request.name))

    async def ListFunctions(self, request: pb.ListFunctionsRequest, context: grpc.aio.ServicerContext) -> pb.ListFunctionsResponse:
        records = await self._functions.list(current_principal())
        return pb.ListFunctionsResponse(functions=[function_to_pb(r) for r in records])

    async def UpdateFunction(self, request: pb.UpdateFunctionRequest, context: grpc.aio.ServicerContext) -> pb.Function:
        changes: dict[str, object] = {}
        for name in ("runtime", "handler", "description", *_OPTIONAL_INTS):
            if request.HasField(name):
                changes[name] = getattr(request, name)
        if request.env or request.replace_env:
            changes["env"] = dict(request.env)
        record = await self._functions.update_config(
            current_principal(), request.name, changes, request.replace_env, request.expected_revision
        )
        return function_to_pb(record)

    async def UpdateFunctionCode(self, request: pb.UpdateFunctionCodeRequest, context: grpc.aio.ServicerContext) -> pb.Function:
        record = await self._functions.update_code(
            current_principal(), request.name, request.code.zip_base64, request.expected_revision
        )
        return function_to_pb(record)

    async def DeleteFunction(self, request: pb.DeleteFunctionRequest, context: grpc.aio.ServicerContext) -> pb.DeleteFunctionResponse:
        await self._functions.delete(current_principal(), request.name)
        return pb.DeleteFunctionResponse()

    async def CreateKey(self, request: pb.CreateKeyRequest, context: grpc.aio.ServicerContext) -> pb.ApiKey:
        issued = await self._keys.create(current_principal(), request.namespace, request.description, request.admin)
        r = issued.record
        return pb.ApiKey(
            api_key=issued.api_key,
            key_id=r.key_id,
            namespace=r.namespace,
            admin=r.admin,
            description=r.description,
            created_at=r.created_at,
        )
