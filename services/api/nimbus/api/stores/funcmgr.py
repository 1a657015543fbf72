"""Client adapter for funcmgr: records in, records out, NimbusError on failure."""

from __future__ import annotations

import dataclasses

from nimbus.common import rpc
from nimbus.common.convert import config_to_pb, record_from_pb
from nimbus.common.model import FunctionConfig, FunctionRecord
from nimbus.common.service import channel
from nimbus.internal.v1 import funcmgr_pb2, funcmgr_pb2_grpc


class FuncMgrClient:
    def __init__(self, address: str, timeout_s: float) -> None:
        self._channel = channel(address)
        self._stub = funcmgr_pb2_grpc.FunctionManagerStub(self._channel)
        self._timeout_s = timeout_s

    async def close(self) -> None:
        await self._channel.close()

    async def create(self, namespace: str, name: str, config: FunctionConfig, code_zip: bytes) -> FunctionRecord:
        req = funcmgr_pb2.CreateFunctionRequest(namespace=namespace, name=name, config=config_to_pb(config), code_zip=code_zip)
        return record_from_pb(await rpc.call(self._stub.CreateFunction, req, timeout_s=self._timeout_s))

    async def get(self, namespace: str, name: str) -> FunctionRecord:
        req = funcmgr_pb2.FunctionRef(namespace=namespace, name=name)
        return record_from_pb(await rpc.call(self._stub.GetFunction, req, timeout_s=self._timeout_s))

    async def list(self, namespace: str) -> list[FunctionRecord]:
        res = await rpc.call(self._stub.ListFunctions, funcmgr_pb2.ListFunctionsRequest(namespace=namespace), timeout_s=self._timeout_s)
        return [record_from_pb(r) for r in res.functions]

    async def update_config(
        self, namespace: str, name: str, changes: dict[str, object], replace_env: bool, expected_revision: int
    ) -> FunctionRecord:
        # Only the masked fields are read by funcmgr; the rest of this message is filler.
        config = dataclasses.replace(FunctionConfig(runtime="", handler="", memory_mb=0, timeout_s=0), **changes)  # type: ignore[arg-type]
        req = funcmgr_pb2.UpdateFunctionRequest(
            ref=funcmgr_pb2.FunctionRef(namespace=namespace, name=name),
            config=config_to_pb(config),
            update_mask=sorted(changes),
            replace_env=replace_env,
            expected_revision=expected_revision,
        )
        return record_from_pb(await rpc.call(self._stub.UpdateFunction, req, timeout_s=self._timeout_s))

    async def update_code(self, namespace: str, name: str, code_zip: bytes, expected_revision: int) -> FunctionRecord:
        req = funcmgr_pb2.UpdateFunctionCodeRequest(
            ref=funcmgr_pb2.FunctionRef(namespace=namespace, name=name), code_zip=code_zip, expected_revision=expected_revision
        )
        return record_from_pb(await rpc.call(self._stub.UpdateFunctionCode, req, timeout_s=self._timeout_s))

    async def delete(self, namespace: str, name: str) -> None:
        await rpc.call(self._stub.DeleteFunction, funcmgr_pb2.FunctionRef(namespace=namespace, name=name), timeout_s=self._timeout_s)
