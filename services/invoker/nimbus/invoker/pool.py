"""Instances of one function version as this invoker sees them, and the calls waiting for one.

No I/O: the dispatcher feeds it instances (from the etcd watch or a fresh start) and releases.
Waiters are served strictly first in, first out. A waiter handed an instance that was just
started for it (not one freed by another call or kept warm) is a cold start.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from nimbus.common.model import InstanceRecord


@dataclass(frozen=True, slots=True)
class PoolKey:
    namespace: str
    function: str
    version: str
    # A config or code change makes a new pool; the old one's instances finish and are drained.
    function_revision: int


@dataclass(frozen=True, slots=True)
class Grant:
    instance: InstanceRecord
    cold: bool


@dataclass(slots=True)
class Pool:
    instances: dict[str, InstanceRecord] = field(default_factory=dict)
    idle: deque[str] = field(default_factory=deque)
    busy: set[str] = field(default_factory=set)
    waiters: deque[asyncio.Future[Grant]] = field(default_factory=deque)
    starting: int = 0

    def add(self, instance: InstanceRecord, *, started_for_waiter: bool = False) -> None:
        if instance.instance_id in self.instances:
            return
        self.instances[instance.instance_id] = instance
        # The etcd watch often delivers a started instance before the start call returns.
        self._hand_over(instance.instance_id, cold=started_for_waiter or self.starting > 0)

    def remove(self, instance_id: str) -> None:
        self.instances.pop(instance_id, None)
        self.busy.discard(instance_id)
        try:
            self.idle.remove(instance_id)
        except ValueError:
            pass

    def try_acquire(self) -> InstanceRecord | None:
        while self.idle:
            instance_id = self.idle.popleft()
            if instance_id in self.instances:
                self.busy.add(instance_id)
                return self.instances[instance_id]
        return None

    def release(self, instance_id: str) -> None:
        self.busy.discard(instance_id)
        if instance_id in self.instances:
            self._hand_over(instance_id, cold=False)

    def enqueue(self) -> asyncio.Future[Grant]:
        waiter: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def needs_start(self, cap: int) -> bool:
        """More calls wait than starts are under way, and the cap leaves room for another."""
        waiting = sum(1 for w in self.waiters if not w.done())
        return waiting > self.starting and len(self.instances) + self.starting < cap

    def fail_waiters(self, error: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def _hand_over(self, instance_id: str, cold: bool) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.busy.add(instance_id)
                waiter.set_result(Grant(self.instances[instance_id], cold))
                return
        self.idle.append(instance_id)
