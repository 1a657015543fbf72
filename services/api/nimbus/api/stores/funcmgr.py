"""Client adapter for funcmgr: records in, records out, NimbusError on failure."""

from __future__ import annotations

import builtins
import dataclasses
from collections.abc import AsyncIterator

import grpc
from nimbus.common import rpc, tracing
from nimbus.common.convert import alias_from_pb, config_to_pb, record_from_pb, version_from_pb
from nimbus.common.errors import DeadlineExceeded, from_rpc_error
from nimbus.common.model import (
    AliasRecord,
    ConfigFields,
    FunctionConfig,
    FunctionRecord,
    VersionRecord,
)
from nimbus.common.service import channel
from nimbus.internal.v1 import funcmgr_pb2, funcmgr_pb2_grpc, types_pb2


class FuncMgrClient:
    def __init__(self, address: str, timeout_s: float) -> None:
        self._channel = channel(address, "funcmgr")
        self._stub = funcmgr_pb2_grpc.FunctionManagerStub(self._channel)
        self._timeout_s = timeout_s

    async def close(self) -> None:
        await self._channel.close()

    async def create(
        self, namespace: str, name: str, config: FunctionConfig, code_zip: bytes
    ) -> FunctionRecord:
        req = funcmgr_pb2.CreateFunctionRequest(
            namespace=namespace, name=name, config=config_to_pb(config), code_zip=code_zip
        )
        return record_from_pb(
            await rpc.call(self._stub.CreateFunction, req, timeout_s=self._timeout_s)
        )

    async def get(self, namespace: str, name: str) -> FunctionRecord:
        req = funcmgr_pb2.FunctionRef(namespace=namespace, name=name)
        return record_from_pb(
            await rpc.call(self._stub.GetFunction, req, timeout_s=self._timeout_s)
        )

    async def list(self, namespace: str) -> list[FunctionRecord]:
        res = await rpc.call(
            self._stub.ListFunctions,
            funcmgr_pb2.ListFunctionsRequest(namespace=namespace),
            timeout_s=self._timeout_s,
        )
        return [record_from_pb(r) for r in res.functions]

    async def update_config(
        self,
        namespace: str,
        name: str,
        changes: ConfigFields,
        replace_env: bool,
        expected_revision: int,
    ) -> FunctionRecord:
        # Only the masked fields are read by funcmgr; the rest of this message is filler.
        config = dataclasses.replace(
            FunctionConfig(runtime="", handler="", memory_mb=0, timeout_s=0), **changes
        )
        req = funcmgr_pb2.UpdateFunctionRequest(
            ref=funcmgr_pb2.FunctionRef(namespace=namespace, name=name),
            config=config_to_pb(config),
            update_mask=sorted(changes),
            replace_env=replace_env,
            expected_revision=expected_revision,
        )
        return record_from_pb(
            await rpc.call(self._stub.UpdateFunction, req, timeout_s=self._timeout_s)
        )

    async def update_code(
        self, namespace: str, name: str, code_zip: bytes, expected_revision: int
    ) -> FunctionRecord:
        req = funcmgr_pb2.UpdateFunctionCodeRequest(
            ref=funcmgr_pb2.FunctionRef(namespace=namespace, name=name),
            code_zip=code_zip,
            expected_revision=expected_revision,
        )
        return record_from_pb(
            await rpc.call(self._stub.UpdateFunctionCode, req, timeout_s=self._timeout_s)
        )

    async def delete(self, namespace: str, name: str) -> None:
        await rpc.call(
            self._stub.DeleteFunction,
            funcmgr_pb2.FunctionRef(namespace=namespace, name=name),
            timeout_s=self._timeout_s,
        )

    async def publish(
        self, namespace: str, name: str, description: str, expected_revision: int
    ) -> VersionRecord:
        req = funcmgr_pb2.PublishVersionRequest(
            ref=_ref(namespace, name), description=description, expected_revision=expected_revision
        )
        return version_from_pb(
            await rpc.call(self._stub.PublishVersion, req, timeout_s=self._timeout_s)
        )

    async def get_version(self, namespace: str, name: str, version: str) -> VersionRecord:
        req = funcmgr_pb2.VersionRef(ref=_ref(namespace, name), version=version)
        return version_from_pb(
            await rpc.call(self._stub.GetVersion, req, timeout_s=self._timeout_s)
        )

    async def list_versions(self, namespace: str, name: str) -> builtins.list[VersionRecord]:
        res = await rpc.call(
            self._stub.ListVersions, _ref(namespace, name), timeout_s=self._timeout_s
        )
        return [version_from_pb(v) for v in res.versions]

    async def delete_version(self, namespace: str, name: str, version: str) -> None:
        req = funcmgr_pb2.VersionRef(ref=_ref(namespace, name), version=version)
        await rpc.call(self._stub.DeleteVersion, req, timeout_s=self._timeout_s)

    async def put_alias(
        self,
        namespace: str,
        name: str,
        alias: str,
        version: str,
        routing_version: str,
        weight: float,
        description: str,
    ) -> AliasRecord:
        req = funcmgr_pb2.PutAliasRequest(
            ref=_ref(namespace, name),
            alias=alias,
            version=version,
            routing=types_pb2.AliasRouting(version=routing_version, weight=weight),
            description=description,
        )
        return alias_from_pb(await rpc.call(self._stub.PutAlias, req, timeout_s=self._timeout_s))

    async def get_alias(self, namespace: str, name: str, alias: str) -> AliasRecord:
        req = funcmgr_pb2.AliasRef(ref=_ref(namespace, name), alias=alias)
        return alias_from_pb(await rpc.call(self._stub.GetAlias, req, timeout_s=self._timeout_s))

    async def list_aliases(self, namespace: str, name: str) -> builtins.list[AliasRecord]:
        res = await rpc.call(
            self._stub.ListAliases, _ref(namespace, name), timeout_s=self._timeout_s
        )
        return [alias_from_pb(a) for a in res.aliases]

    async def delete_alias(self, namespace: str, name: str, alias: str) -> None:
        req = funcmgr_pb2.AliasRef(ref=_ref(namespace, name), alias=alias)
        await rpc.call(self._stub.DeleteAlias, req, timeout_s=self._timeout_s)

    async def fetch_code(self, sha256: str) -> AsyncIterator[bytes]:
        """The package's bytes in chunks, the whole download within one call's deadline."""
        call = self._stub.FetchCode(
            funcmgr_pb2.FetchCodeRequest(code_sha256=sha256),
            timeout=self._timeout_s,
            metadata=tracing.with_traceparent(()) or None,
        )
        try:
            async for chunk in call:
                yield chunk.data
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise DeadlineExceeded(
                    f"funcmgr did not send the code within {self._timeout_s:.1f}s"
                ) from err
            raise from_rpc_error(err) from err
        finally:
            call.cancel()


def _ref(namespace: str, name: str) -> funcmgr_pb2.FunctionRef:
    return funcmgr_pb2.FunctionRef(namespace=namespace, name=name)
