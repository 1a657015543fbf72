"""The node's presence in etcd: one lease, with the node record and every instance record under it.

When the agent dies the lease expires and etcd drops all of its records within the TTL, which is
how the scheduler and the invokers learn that the node and its instances are gone. The node record
also says which code packages the node holds and how many warm sandboxes of each runtime it has
idle (placement prefers such a node); the keepalive loop rewrites it when that changes. A keepalive
runs in its own task so a slow invoke can never let the lease lapse. If the lease is lost anyway
(etcd unreachable for longer than the TTL, or restarted without its data), the agent grants a new
one and writes the node record and every live instance record again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping

from nimbus.common import keys
from nimbus.common.clock import Clock
from nimbus.common.errors import Unavailable
from nimbus.common.etcd import Etcd
from nimbus.common.logs import kv
from nimbus.common.model import InstanceRecord, NodeRecord

log = logging.getLogger(__name__)

_CALL_TIMEOUT_S = 3.0
_REVOKE_TIMEOUT_S = 2.0

# (sha256 of the cached code packages, idle warm sandboxes per runtime), read at each keepalive.
NodeStatus = Callable[[], tuple[tuple[str, ...], Mapping[str, int]]]


class NodeRegistry:
    def __init__(
        self,
        etcd: Etcd,
        node: NodeRecord,
        ttl_s: int,
        clock: Clock,
        status: NodeStatus | None = None,
    ) -> None:
        self._etcd = etcd
        self._node = node
        self._status = status
        self._written_node: NodeRecord | None = None
        self._ttl_s = ttl_s
        self._clock = clock
        self._lease: int | None = None
        # What must exist in etcd under the lease besides the node record.
        self._records: dict[str, InstanceRecord] = {}
        # Instance records whose delete failed (etcd down); retried by the keepalive loop.
        self._pending_deletes: set[str] = set()
        # True while the records may be missing under the current lease.
        self._unsynced = True
        self._healthy = True
        self._registered = asyncio.Event()
        # Serialises lease changes against record writes, so no record lands on a dead lease.
        self._lock = asyncio.Lock()

    async def wait_registered(self) -> None:
        await self._registered.wait()

    async def run(self) -> None:
        """Registers (waiting for etcd as long as it takes), then keeps the lease alive forever."""
        await self._first_registration()
        interval = self._ttl_s / 3
        while True:
            await self._clock.sleep(interval)
            try:
                await self._tick(timeout_s=min(_CALL_TIMEOUT_S, interval))
                self._set_healthy(True, None)
            except Exception as err:  # never let the keepalive die; the next tick retries
                self._set_healthy(False, err)

    async def put_instance(self, record: InstanceRecord) -> None:
        async with self._lock:
            if self._lease is None:
                raise Unavailable("node is not registered in etcd yet")
            try:
                async with asyncio.timeout(_CALL_TIMEOUT_S):
                    await self._etcd.put(
                        keys.instance(record.node_id, record.instance_id),
                        record.to_json(),
                        lease=self._lease,
                    )
            except Exception as err:
                raise Unavailable(
                    f"cannot write the instance record: {err or type(err).__name__}"
                ) from err
            self._records[record.instance_id] = record
            self._pending_deletes.discard(record.instance_id)

    async def delete_instance(self, instance_id: str) -> None:
        async with self._lock:
            self._records.pop(instance_id, None)
            try:
                async with asyncio.timeout(_CALL_TIMEOUT_S):
                    await self._etcd.delete(keys.instance(self._node.node_id, instance_id))
            except Exception as err:
                self._pending_deletes.add(instance_id)
                log.warning(
                    "instance record delete failed, will retry",
                    extra=kv(instance_id=instance_id, error=str(err)),
                )

    async def close(self) -> None:
        """Revokes the lease, which deletes the node record and every instance record at once."""
        lease, self._lease = self._lease, None
        if lease is None:
            return
        try:
            async with asyncio.timeout(_REVOKE_TIMEOUT_S):
                await self._etcd.revoke_lease(lease)
        except Exception as err:
            log.warning("lease revoke failed; it expires within its TTL", extra=kv(error=str(err)))

    async def _first_registration(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._etcd.wait_ready(deadline_s=30.0)
                await self._delete_stale_instances()
                async with self._lock:
                    await self._write_all(reuse_lease=False)
                self._registered.set()
                log.info("node registered", extra=kv(node_id=self._node.node_id, lease=self._lease))
                return
            except Exception as err:
                log.warning(
                    "node registration failed, retrying",
                    extra=kv(error=str(err) or type(err).__name__),
                )
                await self._clock.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _delete_stale_instances(self) -> None:
        """Records a previous run of this node left; their instances died with it."""
        async with asyncio.timeout(_CALL_TIMEOUT_S * 2):
            stale, _ = await self._etcd.get_prefix(keys.instances_prefix(self._node.node_id))
            for kv_ in stale:
                await self._etcd.delete(kv_.key)
        if stale:
            log.info("deleted stale instance records", extra=kv(count=len(stale)))

    async def _tick(self, timeout_s: float) -> None:
        ttl = 0
        lease = self._lease
        if lease is not None:
            async with asyncio.timeout(timeout_s):
                ttl = await self._etcd.refresh_lease(lease)
        if ttl <= 0 or self._unsynced:
            if ttl <= 0:
                log.warning("node lease lost, registering again", extra=kv(lease=lease))
            async with self._lock:
                await self._write_all(reuse_lease=ttl > 0)
        elif self._current_node() != self._written_node:
            async with self._lock, asyncio.timeout(timeout_s):
                await self._put_node()
        if self._pending_deletes:
            async with self._lock:
                for instance_id in sorted(self._pending_deletes):
                    async with asyncio.timeout(timeout_s):
                        await self._etcd.delete(keys.instance(self._node.node_id, instance_id))
                    self._pending_deletes.discard(instance_id)

    async def _write_all(self, *, reuse_lease: bool) -> None:
        """With the lock held: (a new lease and) the node record and every instance record."""
        self._unsynced = True
        async with asyncio.timeout(_CALL_TIMEOUT_S * 2):
            if not reuse_lease or self._lease is None:
                self._lease = await self._etcd.grant_lease(self._ttl_s)
            await self._put_node()
            for record in list(self._records.values()):
                await self._etcd.put(
                    keys.instance(record.node_id, record.instance_id),
                    record.to_json(),
                    lease=self._lease,
                )
        self._unsynced = False

    def _current_node(self) -> NodeRecord:
        if self._status is None:
            return self._node
        cached, warm = self._status()
        return dataclasses.replace(self._node, cached_code=tuple(cached), warm=dict(warm))

    async def _put_node(self) -> None:
        """With the lock held and a lease: the node record as it is now."""
        node = self._current_node()
        await self._etcd.put(keys.node(node.node_id), node.to_json(), lease=self._lease)
        self._written_node = node

    def _set_healthy(self, healthy: bool, err: Exception | None) -> None:
        # Log changes only: an etcd outage must not print a line every tick.
        if healthy != self._healthy:
            if healthy:
                log.info("node lease keepalive recovered")
            else:
                log.warning(
                    "node lease keepalive failing", extra=kv(error=str(err) or type(err).__name__)
                )
        self._healthy = healthy
