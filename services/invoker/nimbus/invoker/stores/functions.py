"""Function, version and alias records from watch-backed etcd caches.

A miss falls through to one etcd read: a function created or published a moment ago may not
have reached the watch yet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from nimbus.common import keys
from nimbus.common.etcd import KV, Etcd, WatchCache
from nimbus.common.model import AliasRecord, FunctionRecord, VersionRecord

RecordT = TypeVar("RecordT", VersionRecord, AliasRecord)


def _decode(kv: KV) -> FunctionRecord:
    return FunctionRecord.from_json(kv.value, kv.mod_revision)


def _decode_version(kv: KV) -> VersionRecord:
    return VersionRecord.from_json(kv.value, kv.mod_revision)


def _decode_alias(kv: KV) -> AliasRecord:
    return AliasRecord.from_json(kv.value, kv.mod_revision)


class CachedFunctions:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd
        self.cache: WatchCache[FunctionRecord] = WatchCache(etcd, keys.functions_prefix(), _decode)
        self.versions: WatchCache[VersionRecord] = WatchCache(
            etcd, keys.versions_prefix(), _decode_version
        )
        self.aliases: WatchCache[AliasRecord] = WatchCache(
            etcd, keys.aliases_prefix(), _decode_alias
        )

    @property
    def caches(
        self,
    ) -> tuple[WatchCache[FunctionRecord], WatchCache[VersionRecord], WatchCache[AliasRecord]]:
        return self.cache, self.versions, self.aliases

    async def get(self, namespace: str, name: str) -> FunctionRecord | None:
        key = keys.function(namespace, name)
        record = self.cache.items.get(key)
        if record is not None:
            return record
        # Created a moment ago, before the watch delivered it.
        kv = await self._etcd.get(key)
        return None if kv is None else _decode(kv)

    async def prefetch(self, namespace: str, name: str, qualifier: str) -> None:
        """Reads a version or alias the watch has not delivered yet into the cache."""
        version_key = keys.version(namespace, name, qualifier)
        if await self._read_into(self.versions, version_key, _decode_version):
            return
        await self._read_into(self.aliases, keys.alias(namespace, name, qualifier), _decode_alias)

    async def _read_into(
        self, cache: WatchCache[RecordT], key: bytes, decode: Callable[[KV], RecordT]
    ) -> bool:
        """Whether the cache holds key, reading it from etcd when the watch has not yet."""
        if key in cache.items:
            return True
        kv = await self._etcd.get(key)
        if kv is None:
            return False
        cache.items[key] = decode(kv)
        return True

    def version_of(self, namespace: str, name: str) -> Callable[[str], VersionRecord | None]:
        return lambda number: self.versions.items.get(keys.version(namespace, name, number))

    def alias_of(self, namespace: str, name: str) -> Callable[[str], AliasRecord | None]:
        return lambda alias: self.aliases.items.get(keys.alias(namespace, name, alias))
