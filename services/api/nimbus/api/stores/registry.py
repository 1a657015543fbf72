"""etcd adapter for the admin API: registry and rollout records (nimbus.common.registry), and
the node records the node-agents keep under their leases."""

from __future__ import annotations

import logging

from nimbus.common import keys
from nimbus.common.etcd import Etcd
from nimbus.common.model import NodeRecord
from nimbus.common.registry import Rollout, ServiceEndpoint

log = logging.getLogger(__name__)


class EtcdRegistryStore:
    def __init__(self, etcd: Etcd) -> None:
        self._etcd = etcd

    async def endpoints(self, service: str | None) -> list[ServiceEndpoint]:
        kvs, _ = await self._etcd.get_prefix(keys.registry_prefix(service))
        out = []
        for kv in kvs:
            try:
                out.append(ServiceEndpoint.from_json(kv.value))
            except (ValueError, TypeError):
                log.warning(
                    "undecodable registry record", extra={"fields": {"key": kv.key.decode()}}
                )
        return out

    async def rollouts(self) -> list[Rollout]:
        kvs, _ = await self._etcd.get_prefix(keys.rollouts_prefix())
        return [Rollout.from_json(kv.value) for kv in kvs]

    async def put_rollout(self, rollout: Rollout) -> None:
        await self._etcd.put(keys.rollout(rollout.service), rollout.to_json())

    async def delete_rollout(self, service: str) -> bool:
        return await self._etcd.delete(keys.rollout(service))

    async def nodes(self) -> list[NodeRecord]:
        kvs, _ = await self._etcd.get_prefix(keys.nodes_prefix())
        out = []
        for kv in kvs:
            try:
                out.append(NodeRecord.from_json(kv.value))
            except (ValueError, TypeError):
                log.warning("undecodable node record", extra={"fields": {"key": kv.key.decode()}})
        return out
