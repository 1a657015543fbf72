"""Matches calls to instances: an idle one at once, else a FIFO wait while capacity is requested."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol, cast

from nimbus.common.errors import FunctionInitFailed, NimbusError, Throttled, Unavailable
from nimbus.common.model import InstanceRecord, InstanceState
from nimbus.invoker.sync.pool import Grant, Pool, PoolKey
from nimbus.invoker.sync.target import Target

log = logging.getLogger(__name__)


class CapacitySource(Protocol):
    async def request_instance(self, target: Target, timeout_s: float) -> InstanceRecord: ...


def key_of(instance: InstanceRecord) -> PoolKey:
    return PoolKey(
        instance.namespace, instance.function, instance.version, instance.function_revision
    )


class Dispatcher:
    def __init__(
        self, capacity: CapacitySource, queue_wait_s: float, max_instances_per_fn: int
    ) -> None:
        self._capacity = capacity
        self._queue_wait_s = queue_wait_s
        self._max_instances = max_instances_per_fn
        # Looked up by plain tuples on the hot path (a PoolKey is one).
        # Every key is a PoolKey; the hot path looks pools up by plain tuples, which equal them.
        self._pools: dict[tuple[str, str, str, int], Pool] = {}
        self._starts: set[asyncio.Task[None]] = set()

    def pools(self) -> dict[PoolKey, Pool]:
        return cast(dict[PoolKey, Pool], self._pools)

    def on_instance(self, key: bytes, instance: InstanceRecord | None) -> None:
        """Listener for the instances watch cache."""
        if instance is None:
            removed_id = key.decode().rsplit("/", 1)[-1]
            for pool in self._pools.values():
                pool.remove(removed_id)
            return
        if instance.state != InstanceState.READY:
            for pool in self._pools.values():
                pool.remove(instance.instance_id)
            return
        self._pool(key_of(instance)).add(instance)

    def forget(self, instance: InstanceRecord) -> None:
        """The instance failed at its node: stop handing it out before the watch says so."""
        pool = self._pools.get(key_of(instance))
        if pool is not None:
            pool.remove(instance.instance_id)

    def forget_node(self, node_id: str) -> None:
        for pool in self._pools.values():
            for instance_id in [i for i, inst in pool.instances.items() if inst.node_id == node_id]:
                pool.remove(instance_id)

    def try_acquire(self, target: Target) -> InstanceRecord | None:
        """An idle instance at once (a warm call), else None: then acquire() waits for one."""
        pool = self._pools.get((target.namespace, target.function, target.version, target.revision))
        return pool.try_acquire() if pool is not None else None

    async def acquire(self, target: Target, deadline_s: float) -> Grant:
        key = PoolKey(target.namespace, target.function, target.version, target.revision)
        pool = self._pool(key)
        instance = pool.try_acquire()
        if instance is not None:
            return Grant(instance, cold=False)
        waiter = pool.enqueue()
        slots = target.config.instance_concurrency
        # max_concurrency counts calls; the cap counts instances, each taking `slots` of them.
        cap = -(-target.config.max_concurrency // slots) or self._max_instances
        if pool.needs_start(cap, slots):
            self._start(pool, target)
        wait_s = min(self._queue_wait_s, deadline_s)
        try:
            async with asyncio.timeout(wait_s):
                return await waiter
        except TimeoutError:
            self._give_back(pool, waiter)
            raise Throttled(
                f"no instance of {target.function!r} became free within {wait_s:.1f}s; retry later"
            ) from None
        except asyncio.CancelledError:
            self._give_back(pool, waiter)
            raise

    @staticmethod
    def _give_back(pool: Pool, waiter: asyncio.Future[Grant]) -> None:
        # The instance may have been handed over in the same instant the wait ended.
        if not waiter.done():
            waiter.cancel()
        elif not waiter.cancelled() and waiter.exception() is None:
            pool.release(waiter.result().instance.instance_id)

    def release(self, instance: InstanceRecord) -> None:
        pool = self._pools.get(
            (instance.namespace, instance.function, instance.version, instance.function_revision)
        )
        if pool is not None:
            pool.release(instance.instance_id)

    def _start(self, pool: Pool, target: Target) -> None:
        pool.starting += 1

        async def start() -> None:
            try:
                instance = await self._capacity.request_instance(target, self._queue_wait_s)
                pool.add(instance, started_for_waiter=True)
            except NimbusError as err:
                log.warning(
                    "instance start failed",
                    extra={"fields": {"function": target.function, "error": err.message}},
                )
                if not pool.instances:
                    pool.fail_waiters(
                        err
                        if isinstance(err, (Unavailable, Throttled, FunctionInitFailed))
                        else Unavailable(err.message)
                    )
            except Exception as err:
                log.exception("instance start failed")
                if not pool.instances:
                    pool.fail_waiters(Unavailable(f"could not start an instance: {err}"))
            finally:
                pool.starting -= 1

        task = asyncio.create_task(start())
        self._starts.add(task)
        task.add_done_callback(self._starts.discard)

    def _pool(self, key: PoolKey) -> Pool:
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = Pool()
        return pool

    async def close(self) -> None:
        for task in list(self._starts):
            task.cancel()
        await asyncio.gather(*self._starts, return_exceptions=True)
