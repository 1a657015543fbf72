"""Function records in etcd, with revision-checked writes."""

from __future__ import annotations

from nimbus.common import keys
from nimbus.common.etcd import Etcd
from nimbus.common.model import FunctionRecord


class EtcdFunctionStore:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    async def get(self, namespace: str, name: str) -> FunctionRecord | None:
        kv = await self._etcd.get(keys.function(namespace, name))
        return None if kv is None else FunctionRecord.from_json(kv.value, kv.mod_revision)

    async def list(self, namespace: str) -> list[FunctionRecord]:
        kvs, _ = await self._etcd.get_prefix(keys.functions_prefix(namespace))
        return [FunctionRecord.from_json(kv.value, kv.mod_revision) for kv in kvs]

    async def create(self, record: FunctionRecord) -> int | None:
        return await self._etcd.create(keys.function(record.namespace, record.name), record.to_json())

    async def replace(self, record: FunctionRecord, expected_revision: int) -> int | None:
        return await self._etcd.replace(keys.function(record.namespace, record.name), record.to_json(), expected_revision)

    async def delete(self, namespace: str, name: str) -> bool:
        return await self._etcd.delete(keys.function(namespace, name))
