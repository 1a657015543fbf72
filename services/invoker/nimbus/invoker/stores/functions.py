"""Function records from a watch-backed etcd cache, with a direct read on a miss."""

from __future__ import annotations

from nimbus.common import keys
from nimbus.common.etcd import KV, Etcd, WatchCache
from nimbus.common.model import FunctionRecord


def _decode(kv: KV) -> FunctionRecord:
    return FunctionRecord.from_json(kv.value, kv.mod_revision)


class CachedFunctions:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd
        self.cache: WatchCache[FunctionRecord] = WatchCache(etcd, keys.functions_prefix(), _decode)

    async def get(self, namespace: str, name: str) -> FunctionRecord | None:
        key = keys.function(namespace, name)
        record = self.cache.items.get(key)
        if record is not None:
            return record
        # Created a moment ago, before the watch delivered it.
        kv = await self._etcd.get(key)
        return None if kv is None else _decode(kv)
