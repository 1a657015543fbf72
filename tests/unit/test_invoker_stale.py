"""A call that meets instances a scale-down just destroyed moves on to live ones, or to a new one.

The autoscaler drains a batch of instances at once, and the invokers list them until the watch
delivers each record's deletion: calls picked from the pool meanwhile are refused by the node
(NotFound) without having run. The invoker must walk past all of them, however many, and start an
instance when none is left, instead of answering 503 after a fixed number of tries.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from nimbus.common.auth import Principal
from nimbus.common.clock import FakeClock
from nimbus.common.errors import NotFound, Throttled, Unavailable
from nimbus.common.model import FunctionConfig, FunctionRecord, InstanceRecord
from nimbus.invoker.sync.dispatcher import Dispatcher
from nimbus.invoker.sync.invoke import Invoker, InvokeResult
from nimbus.invoker.sync.limits import ConcurrencyLimiter
from nimbus.invoker.sync.target import Target

WHO = Principal("default", "k1", False)
CONFIG = FunctionConfig(runtime="python3.11", handler="main.handler")
RECORD = FunctionRecord("default", "f", CONFIG, "sha", 1, "t", "t", revision=7)


def inst(instance_id: str) -> InstanceRecord:
    return InstanceRecord(
        instance_id, "node-1", "addr", "default", "f", "$LATEST", "sha", 7, 128, "READY", "t"
    )


class FakeFunctions:
    async def get(self, namespace: str, name: str) -> FunctionRecord | None:
        return RECORD if name == "f" else None

    async def prefetch(self, namespace: str, name: str, qualifier: str) -> None:
        pass

    def version_of(self, namespace: str, name: str):  # type: ignore[no-untyped-def]
        return lambda number: None

    def alias_of(self, namespace: str, name: str):  # type: ignore[no-untyped-def]
        return lambda alias: None


class FakeScheduler:
    """Starts instances named new-1, new-2, …; the first `gone_on_start` are destroyed at once."""

    def __init__(self, gone: set[str], gone_on_start: int = 0) -> None:
        self.gone = gone
        self.gone_on_start = gone_on_start
        self.started: list[str] = []
        self._ids = itertools.count(1)

    async def request_instance(self, target: Target, timeout_s: float) -> InstanceRecord:
        instance = inst(f"new-{next(self._ids)}")
        self.started.append(instance.instance_id)
        if len(self.started) <= self.gone_on_start:
            self.gone.add(instance.instance_id)
        return instance


class FakeNode:
    """Refuses calls to destroyed instances as the node-agent does, and advances time per call."""

    def __init__(self, gone: set[str], clock: FakeClock, call_s: float = 0.001) -> None:
        self.gone = gone
        self.clock = clock
        self.call_s = call_s
        self.tried: list[str] = []

    async def invoke(
        self,
        instance: InstanceRecord,
        request_id: str,
        payload: bytes,
        timeout_s: float,
        log_tail: bool = False,
    ) -> InvokeResult:
        self.clock.t += self.call_s
        self.tried.append(instance.instance_id)
        if instance.instance_id in self.gone:
            raise NotFound(f"instance {instance.instance_id} not found on node node-1")
        return InvokeResult(request_id, b"{}", "", 100, 1, False, "$LATEST")


class NoSlots:
    async def take(self, *args: object) -> int:
        raise AssertionError("no concurrency limit is set")

    async def give_back(self, *args: object) -> None:
        raise AssertionError("no concurrency limit is set")


def invoker_with(
    live: list[str], gone: list[str], *, gone_on_start: int = 0, call_s: float = 0.001
):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    dead = set(gone)
    scheduler = FakeScheduler(dead, gone_on_start)
    node = FakeNode(dead, clock, call_s)
    dispatcher = Dispatcher(scheduler, queue_wait_s=10.0, max_instances_per_fn=50)
    # Known to this invoker as the watch had them: the destroyed ones first in line, as in the
    # pool's FIFO after a batch of them went idle together.
    for instance_id in [*gone, *live]:
        dispatcher.on_instance(
            f"/nimbus/instances/node-1/{instance_id}".encode(), inst(instance_id)
        )
    invoker = Invoker(
        FakeFunctions(),
        dispatcher,
        node,
        ConcurrencyLimiter(NoSlots(), clock, 0),
        lambda: 0.0,
        clock=clock,
    )
    return invoker, dispatcher, scheduler, node


@pytest.mark.parametrize("stale", [1, 3, 10, 40])
async def test_a_call_walks_past_every_destroyed_instance_to_a_live_one(stale):
    gone = [f"old-{i}" for i in range(stale)]
    invoker, dispatcher, scheduler, node = invoker_with(["live"], gone)
    result = await invoker.invoke(WHO, "f", "", b"{}", deadline_s=30.0)
    assert result.payload == b"{}"
    assert node.tried == [*gone, "live"]
    assert scheduler.started == []  # a live instance was there: nothing needed starting
    pool = next(iter(dispatcher.pools().values()))
    assert set(pool.instances) == {"live"}  # the destroyed ones are no longer handed out
    await dispatcher.close()


async def test_a_call_that_finds_every_known_instance_destroyed_gets_a_new_one():
    # Scale to min: all the instances this invoker knew were destroyed in one batch.
    gone = [f"old-{i}" for i in range(8)]
    invoker, dispatcher, scheduler, node = invoker_with([], gone)
    result = await invoker.invoke(WHO, "f", "", b"{}", deadline_s=30.0)
    assert node.tried == [*gone, "new-1"]
    assert scheduler.started == ["new-1"]
    assert result.cold_start
    await dispatcher.close()


async def test_a_new_instance_gone_at_once_is_replaced_a_few_times_then_503():
    invoker, dispatcher, scheduler, node = invoker_with([], [], gone_on_start=1)
    await invoker.invoke(WHO, "f", "", b"{}", deadline_s=30.0)
    assert scheduler.started == ["new-1", "new-2"]

    # A node that loses every instance it starts is not asked for new ones forever.
    invoker, dispatcher2, scheduler, node = invoker_with([], [], gone_on_start=100)
    with pytest.raises(Unavailable, match="could not be run: instance new-3 not found"):
        await invoker.invoke(WHO, "f", "", b"{}", deadline_s=30.0)
    assert scheduler.started == ["new-1", "new-2", "new-3"]
    await dispatcher.close()
    await dispatcher2.close()


async def test_the_walk_ends_with_the_calls_deadline():
    # Each refusal takes 1 s here: a 2.5 s deadline allows three of the ten.
    gone = [f"old-{i}" for i in range(10)]
    invoker, dispatcher, scheduler, node = invoker_with(["live"], gone, call_s=1.0)
    with pytest.raises(Unavailable, match="could not be run: instance old-2 not found"):
        await invoker.invoke(WHO, "f", "", b"{}", deadline_s=2.5)
    assert node.tried == gone[:3]
    await dispatcher.close()


async def test_the_queue_wait_after_refusals_is_what_is_left_of_the_deadline():
    # Every instance is gone and the new one does not come in time: the wait for it is what the
    # refusals left of the deadline (0.5 - 2 x 0.2 s), and ends as the usual 429.
    gone = [f"old-{i}" for i in range(2)]
    invoker, dispatcher, scheduler, node = invoker_with([], gone, call_s=0.2)

    async def slow(target: Target, timeout_s: float) -> InstanceRecord:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    scheduler.request_instance = slow  # type: ignore[method-assign]
    with pytest.raises(Throttled, match="within 0.1s"):
        await invoker.invoke(WHO, "f", "", b"{}", deadline_s=0.5)
    assert node.tried == gone
    await dispatcher.close()
