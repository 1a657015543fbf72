"""The namespaces' quotas, watched from etcd: a call or an event finds its namespace's in memory."""

from __future__ import annotations

from nimbus.common import keys
from nimbus.common.etcd import KV, Etcd, WatchCache
from nimbus.common.quotas import Quotas


def _decode(kv: KV) -> Quotas:
    return Quotas.from_json(kv.value)


class QuotaCache:
    def __init__(self, etcd: Etcd) -> None:
        self.cache: WatchCache[Quotas] = WatchCache(etcd, keys.quotas_prefix(), _decode)

    def of(self, namespace: str) -> Quotas | None:
        return self.cache.items.get(keys.quotas(namespace))
