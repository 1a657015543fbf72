from __future__ import annotations

from nimbus.common import auth, keys
from nimbus.common.etcd import Etcd


class EtcdKeyStore:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    async def store(self, key: str, record: auth.KeyRecord) -> None:
        await auth.store_key(self._etcd, key, record)

    async def list(self) -> list[auth.KeyRecord]:
        kvs, _ = await self._etcd.get_prefix(keys.api_keys_prefix())
        return [auth.KeyRecord.from_json(kv.value) for kv in kvs]

    async def delete(self, key_id: str) -> bool:
        # Keys are stored under their hash; a linear scan is fine for the few keys a cluster has.
        kvs, _ = await self._etcd.get_prefix(keys.api_keys_prefix())
        for kv in kvs:
            if auth.KeyRecord.from_json(kv.value).key_id == key_id:
                return await self._etcd.delete(kv.key)
        return False
