"""Leader election through etcd: the leader holds a key under its lease; the others retry.

A leader that cannot refresh its lease in time steps down at once, before the lease lapses, so
two schedulers never both believe they lead for longer than one refresh period.
"""

from __future__ import annotations

import logging

from nimbus.common.clock import Clock
from nimbus.common.errors import Unavailable
from nimbus.common.etcd import Etcd

log = logging.getLogger(__name__)


class LeaderElection:
    def __init__(self, etcd: Etcd, key: bytes, identity: str, clock: Clock, ttl_s: int = 5) -> None:
        self._etcd = etcd
        self._key = key
        self._identity = identity.encode()
        self._clock = clock
        self._ttl_s = ttl_s
        self._lease = 0
        self.is_leader = False

    async def run(self) -> None:
        while True:
            try:
                await self._step()
            except Unavailable as err:
                if self.is_leader:
                    log.warning(
                        "stepping down: etcd unreachable", extra={"fields": {"error": err.message}}
                    )
                self.is_leader, self._lease = False, 0
            await self._clock.sleep(self._ttl_s / 5)

    async def _step(self) -> None:
        if self._lease and await self._etcd.refresh_lease(self._lease) <= 0:
            self._lease = 0
            if self.is_leader:
                log.warning("stepping down: lease lost")
            self.is_leader = False
        if not self._lease:
            self._lease = await self._etcd.grant_lease(self._ttl_s)
        if self.is_leader:
            holder = await self._etcd.get(self._key)
            if holder is None or holder.value != self._identity:
                log.warning("stepping down: the leader key is not ours")
                self.is_leader = False
            return
        if await self._etcd.create(self._key, self._identity, lease=self._lease) is not None:
            self.is_leader = True
            log.info("elected leader", extra={"fields": {"identity": self._identity.decode()}})

    async def resign(self) -> None:
        if self._lease:
            try:
                await self._etcd.revoke_lease(self._lease)
            except Unavailable:
                pass
        self.is_leader, self._lease = False, 0
