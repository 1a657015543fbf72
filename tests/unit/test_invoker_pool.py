import asyncio

import pytest
from nimbus.common.model import InstanceRecord
from nimbus.invoker.sync.pool import Pool


def inst(i: str, slots: int = 1) -> InstanceRecord:
    return InstanceRecord(
        i, "n1", "addr", "default", "f", "$LATEST", "sha", 1, 128, "READY", "t", slots
    )


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
    [
        (1, 0, 0, 10, True),
        (1, 1, 0, 10, False),
        (3, 1, 0, 10, True),
        (2, 0, 1, 1, False),
        (0, 0, 0, 10, False),
    ],
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


async def test_instance_with_slots_takes_that_many_calls_then_none():
    pool = Pool()
    pool.add(inst("a", slots=3))
    got = [pool.try_acquire() for _ in range(3)]
    assert [g.instance_id for g in got if g is not None] == ["a", "a", "a"]
    assert pool.try_acquire() is None
    assert pool.busy == {"a": 3} and pool.in_flight == 3
    pool.release("a")
    assert pool.busy == {"a": 2}
    assert pool.try_acquire().instance_id == "a"


async def test_started_instance_serves_as_many_waiters_as_it_has_slots_cold():
    pool = Pool()
    waiters = [pool.enqueue() for _ in range(4)]
    pool.add(inst("a", slots=3), started_for_waiter=True)
    assert [w.done() for w in waiters] == [True, True, True, False]
    assert all(w.result().cold for w in waiters[:3])
    pool.release("a")
    assert waiters[3].result().instance.instance_id == "a" and not waiters[3].result().cold
    assert pool.in_flight == 3


async def test_free_slot_goes_to_the_first_waiter():
    pool = Pool()
    pool.add(inst("a", slots=2))
    pool.try_acquire(), pool.try_acquire()
    first, second = pool.enqueue(), pool.enqueue()
    pool.release("a")
    assert first.done() and not second.done()


async def test_removed_instance_loses_all_its_slots():
    pool = Pool()
    pool.add(inst("a", slots=5))
    pool.add(inst("b", slots=1))
    pool.try_acquire()
    pool.remove("a")
    assert pool.busy == {} and list(pool.idle) == ["b"]
    pool.release("a")  # a call that ran on it ends after the removal: nothing comes back
    assert pool.try_acquire().instance_id == "b"
    assert pool.try_acquire() is None


@pytest.mark.parametrize(
    "waiters, starting, slots, free_slots, cap, expected",
    [
        (10, 1, 10, 0, 10, False),  # one instance starting brings a slot for each waiter
        (11, 1, 10, 0, 10, True),
        (5, 0, 10, 5, 10, False),  # the free slots of a running instance take them
        (6, 0, 10, 5, 10, True),
        (30, 1, 10, 0, 2, True),  # room for one more instance under the cap of 2
        (30, 1, 10, 0, 1, False),
    ],
)
async def test_needs_start_counts_slots(waiters, starting, slots, free_slots, cap, expected):
    pool = Pool()
    if free_slots:
        # A running instance with some slots taken (the formula alone: acquire never queues a
        # waiter while a slot is free).
        pool.add(inst("a", slots=slots))
        for _ in range(slots - free_slots):
            pool.try_acquire()
        assert len(pool.idle) == free_slots
    for _ in range(waiters):
        pool.enqueue()
    pool.starting = starting
    assert pool.needs_start(cap, slots) is expected
