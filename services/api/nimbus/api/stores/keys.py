from __future__ import annotations

from nimbus.common import auth
from nimbus.common.etcd import Etcd


class EtcdKeyWriter:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    async def store(self, key: str, record: auth.KeyRecord) -> None:
        await auth.store_key(self._etcd, key, record)
