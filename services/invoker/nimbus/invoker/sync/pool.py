"""Instances of one function version as this invoker sees them, and the calls waiting for one.

No I/O: the dispatcher feeds it instances (from the etcd watch or a fresh start) and releases.
An instance has `instance_concurrency` call slots (its record says how many; 1 by default).
Waiters are served strictly first in, first out. A waiter handed an instance that was just
started for it (not one freed by another call or kept warm) is a cold start.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

from nimbus.common.model import InstanceRecord


class PoolKey(NamedTuple):
    """A tuple, so a pool is found by a plain (namespace, function, version, revision) tuple too:
    its hash and compare run in C, ~10x cheaper than a frozen dataclass's, twice per call."""

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
    # One entry per free call slot (an instance with instance_concurrency N has up to N), so an
    # instance is "idle" while it has a free slot and a started one serves N waiters at once.
    idle: deque[str] = field(default_factory=deque)
    # Calls this invoker has in flight on each instance.
    busy: dict[str, int] = field(default_factory=dict)
    waiters: deque[asyncio.Future[Grant]] = field(default_factory=deque)
    # Instances being started for this pool, each bringing `slots_per_start` slots.
    starting: int = 0

    @property
    def in_flight(self) -> int:
        return sum(self.busy.values())

    def add(self, instance: InstanceRecord, *, started_for_waiter: bool = False) -> None:
        if instance.instance_id in self.instances:
            return
        self.instances[instance.instance_id] = instance
        # The etcd watch often delivers a started instance before the start call returns.
        cold = started_for_waiter or self.starting > 0
        for _ in range(max(1, instance.instance_concurrency)):
            self._hand_over(instance.instance_id, cold)

    def remove(self, instance_id: str) -> None:
        if self.instances.pop(instance_id, None) is None:
            return
        self.busy.pop(instance_id, None)
        if instance_id in self.idle:
            self.idle = deque(i for i in self.idle if i != instance_id)

    def try_acquire(self) -> InstanceRecord | None:
        while self.idle:
            instance_id = self.idle.popleft()
            if instance_id in self.instances:
                self.busy[instance_id] = self.busy.get(instance_id, 0) + 1
                return self.instances[instance_id]
        return None

    def release(self, instance_id: str) -> None:
        calls = self.busy.get(instance_id)
        if calls is None:
            return  # removed meanwhile: its slots went with it
        if calls > 1:
            self.busy[instance_id] = calls - 1
        else:
            del self.busy[instance_id]
        self._hand_over(instance_id, cold=False)

    def enqueue(self) -> asyncio.Future[Grant]:
        waiter: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return waiter

    def needs_start(self, cap: int, slots_per_start: int = 1) -> bool:
        """More calls wait than free slots and the slots of instances already starting can take,
        and the cap (in instances) leaves room for another."""
        waiting = sum(1 for w in self.waiters if not w.done())
        free = sum(1 for i in self.idle if i in self.instances)
        return (
            waiting > free + self.starting * slots_per_start
            and len(self.instances) + self.starting < cap
        )

    def fail_waiters(self, error: Exception) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def _hand_over(self, instance_id: str, cold: bool) -> None:
        """Gives one free slot of the instance to the first live waiter, else lists it idle."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.busy[instance_id] = self.busy.get(instance_id, 0) + 1
                waiter.set_result(Grant(self.instances[instance_id], cold))
                return
        self.idle.append(instance_id)
