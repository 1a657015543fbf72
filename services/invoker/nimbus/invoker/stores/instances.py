from __future__ import annotations

from nimbus.common import keys
from nimbus.common.etcd import Etcd, WatchCache
from nimbus.common.model import InstanceRecord


def instances_cache(etcd: Etcd) -> WatchCache[InstanceRecord]:
    """Every instance of every node; the invoker learns instances from this watch, never by
    polling."""
    return WatchCache(etcd, keys.instances_prefix(), lambda kv: InstanceRecord.from_json(kv.value))
