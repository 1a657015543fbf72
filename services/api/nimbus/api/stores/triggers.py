"""Triggers and event configs in etcd, each write guarded by the function record's revision."""

from __future__ import annotations

from nimbus.common import keys
from nimbus.common.etcd import Etcd, ModIs, Op, Put
from nimbus.common.eventconfig import EventConfig
from nimbus.common.triggers import TriggerRecord


class EtcdTriggerStore:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    async def create(self, record: TriggerRecord, function_revision: int) -> bool | None:
        """True when written; False when the function changed meanwhile (read it again); None when
        a trigger with this id exists already."""
        key = keys.trigger(record.namespace, record.function, record.trigger_id)
        guard = [
            ModIs(keys.function(record.namespace, record.function), function_revision),
            ModIs(key, 0),
        ]
        ops: list[Op] = [Put(key, record.to_json())]
        if await self._etcd.commit(guard, ops) is not None:
            return True
        return None if await self._etcd.get(key) is not None else False

    async def list(self, namespace: str, name: str) -> list[TriggerRecord]:
        kvs, _ = await self._etcd.get_prefix(keys.triggers_prefix(namespace, name))
        return [TriggerRecord.from_json(kv.value) for kv in kvs]

    async def get(self, namespace: str, name: str, trigger_id: str) -> TriggerRecord | None:
        kv = await self._etcd.get(keys.trigger(namespace, name, trigger_id))
        return None if kv is None else TriggerRecord.from_json(kv.value)

    async def delete(self, namespace: str, name: str, trigger_id: str) -> bool:
        return await self._etcd.delete(keys.trigger(namespace, name, trigger_id))

    async def put_event_config(self, config: EventConfig, function_revision: int) -> bool:
        guard = [ModIs(keys.function(config.namespace, config.function), function_revision)]
        ops: list[Op] = [
            Put(keys.event_config(config.namespace, config.function), config.to_json())
        ]
        return await self._etcd.commit(guard, ops) is not None

    async def get_event_config(self, namespace: str, name: str) -> EventConfig | None:
        kv = await self._etcd.get(keys.event_config(namespace, name))
        return None if kv is None else EventConfig.from_json(kv.value)

    async def delete_event_config(self, namespace: str, name: str) -> bool:
        return await self._etcd.delete(keys.event_config(namespace, name))
