import asyncio

import pytest

from nimbus.common.model import InstanceRecord
from nimbus.invoker.pool import Pool


def inst(i: str) -> InstanceRecord:
    return InstanceRecord(i, "n1", "addr", "default", "f", "$LATEST", "sha", 1, 128, "READY", "t")


async def test_idle_instance_is_taken_then_released():
    pool = Pool()
    pool.add(inst("a"))
    got = pool.try_acquire()
    assert got is not None and got.instance_id == "a"
    assert pool.try_acquire() is None
    pool.release("a")
    assert pool.try_acquire().instance_id == "a"


async def test_waiters_are_served_first_in_first_out():
    pool = Pool()
    first, second = pool.enqueue(), pool.enqueue()
    pool.add(inst("a"), started_for_waiter=True)
    assert first.done() and first.result().instance.instance_id == "a" and first.result().cold
    assert not second.done()
    pool.release("a")
    assert second.result().instance.instance_id == "a" and not second.result().cold
    assert "a" in pool.busy


async def test_cancelled_waiter_is_skipped():
    pool = Pool()
    gone, live = pool.enqueue(), pool.enqueue()
    gone.cancel()
    pool.add(inst("a"))
    assert live.result().instance.instance_id == "a"
    assert not live.result().cold  # nothing was starting: a warm instance that appeared


async def test_removed_instance_is_never_handed_out():
    pool = Pool()
    pool.add(inst("a"))
    pool.remove("a")
    assert pool.try_acquire() is None


@pytest.mark.parametrize(
    "waiters, starting, instances, cap, expected",
    [(1, 0, 0, 10, True), (1, 1, 0, 10, False), (3, 1, 0, 10, True), (2, 0, 1, 1, False), (0, 0, 0, 10, False)],
)
async def test_needs_start(waiters, starting, instances, cap, expected):
    pool = Pool()
    for i in range(instances):
        pool.add(inst(f"i{i}"))
        pool.try_acquire()
    for _ in range(waiters):
        pool.enqueue()
    pool.starting = starting
    assert pool.needs_start(cap) is expected


async def test_fail_waiters_raises_in_each():
    pool = Pool()
    waiter = pool.enqueue()
    pool.fail_waiters(RuntimeError("no capacity"))
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(waiter, 1)
