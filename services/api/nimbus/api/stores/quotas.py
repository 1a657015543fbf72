"""etcd adapter of namespace quotas: one record per namespace (nimbus.common.keys.quotas)."""

from __future__ import annotations

from nimbus.common import keys
from nimbus.common.etcd import Etcd
from nimbus.common.quotas import Quotas


class EtcdQuotaStore:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    async def get(self, namespace: str) -> Quotas | None:
        kv = await self._etcd.get(keys.quotas(namespace))
        return None if kv is None else Quotas.from_json(kv.value)

    async def put(self, quotas: Quotas) -> None:
        await self._etcd.put(keys.quotas(quotas.namespace), quotas.to_json())
