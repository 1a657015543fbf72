"""Function, version and alias records in etcd. Every multi-key change is one transaction."""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass

from nimbus.common import keys
from nimbus.common.etcd import Delete, DeletePrefix, Etcd, ModIs, Op, Put
from nimbus.common.model import AliasRecord, FunctionRecord, VersionRecord


@dataclass(frozen=True, slots=True)
class FunctionMeta:
    last_version: int
    # etcd mod_revision of the meta key (0: none yet), the guard of version and alias changes.
    revision: int


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
        key = keys.function(record.namespace, record.name)
        # A leftover meta key of a deleted function of the same name is reset with the create.
        return await self._etcd.commit(
            [ModIs(key, 0)],
            [Put(key, record.to_json()), Delete(keys.function_meta(record.namespace, record.name))],
        )

    async def replace(self, record: FunctionRecord, expected_revision: int) -> int | None:
        return await self._etcd.replace(
            keys.function(record.namespace, record.name), record.to_json(), expected_revision
        )

    async def delete(self, namespace: str, name: str, revision: int) -> bool:
        ops: list[Op] = [
            Delete(keys.function(namespace, name)),
            Delete(keys.function_meta(namespace, name)),
        ]
        ops += [DeletePrefix(prefix) for prefix in keys.owned_by_function(namespace, name)]
        return (
            await self._etcd.commit([ModIs(keys.function(namespace, name), revision)], ops)
            is not None
        )

    async def meta(self, namespace: str, name: str) -> FunctionMeta:
        kv = await self._etcd.get(keys.function_meta(namespace, name))
        if kv is None:
            return FunctionMeta(0, 0)
        return FunctionMeta(int(json.loads(kv.value)["last_version"]), kv.mod_revision)

    async def get_version(self, namespace: str, name: str, version: str) -> VersionRecord | None:
        kv = await self._etcd.get(keys.version(namespace, name, version))
        return None if kv is None else VersionRecord.from_json(kv.value, kv.mod_revision)

    async def list_versions(self, namespace: str, name: str) -> builtins.list[VersionRecord]:
        kvs, _ = await self._etcd.get_prefix(keys.versions_prefix(namespace, name))
        return [VersionRecord.from_json(kv.value, kv.mod_revision) for kv in kvs]

    async def add_version(
        self, record: FunctionRecord, meta: FunctionMeta, version: VersionRecord
    ) -> int | None:
        """Only if the function and its meta are unchanged since they were read."""
        ns, name = record.namespace, record.name
        return await self._etcd.commit(
            [
                ModIs(keys.function(ns, name), record.revision),
                ModIs(keys.function_meta(ns, name), meta.revision),
            ],
            [
                Put(keys.version(ns, name, version.version), version.to_json()),
                _meta_put(ns, name, int(version.version)),
            ],
        )

    async def delete_version(
        self, namespace: str, name: str, version: str, meta: FunctionMeta
    ) -> bool:
        ops: list[Op] = [
            Delete(keys.version(namespace, name, version)),
            _meta_put(namespace, name, meta.last_version),
        ]
        return (
            await self._etcd.commit(
                [ModIs(keys.function_meta(namespace, name), meta.revision)], ops
            )
            is not None
        )

    async def get_alias(self, namespace: str, name: str, alias: str) -> AliasRecord | None:
        kv = await self._etcd.get(keys.alias(namespace, name, alias))
        return None if kv is None else AliasRecord.from_json(kv.value, kv.mod_revision)

    async def list_aliases(self, namespace: str, name: str) -> builtins.list[AliasRecord]:
        kvs, _ = await self._etcd.get_prefix(keys.aliases_prefix(namespace, name))
        return [AliasRecord.from_json(kv.value, kv.mod_revision) for kv in kvs]

    async def put_alias(
        self, alias: AliasRecord, meta: FunctionMeta, versions: builtins.list[VersionRecord]
    ) -> int | None:
        """Only if the meta is unchanged and every version the alias names still exists."""
        ns, name = alias.namespace, alias.name
        checks = [ModIs(keys.function_meta(ns, name), meta.revision)]
        checks += [ModIs(keys.version(ns, name, v.version), v.revision) for v in versions]
        ops: list[Op] = [
            Put(keys.alias(ns, name, alias.alias), alias.to_json()),
            _meta_put(ns, name, meta.last_version),
        ]
        return await self._etcd.commit(checks, ops)

    async def delete_alias(self, namespace: str, name: str, alias: str, meta: FunctionMeta) -> bool:
        ops: list[Op] = [
            Delete(keys.alias(namespace, name, alias)),
            _meta_put(namespace, name, meta.last_version),
        ]
        return (
            await self._etcd.commit(
                [ModIs(keys.function_meta(namespace, name), meta.revision)], ops
            )
            is not None
        )


def _meta_put(namespace: str, name: str, last_version: int) -> Put:
    return Put(
        keys.function_meta(namespace, name), json.dumps({"last_version": last_version}).encode()
    )
