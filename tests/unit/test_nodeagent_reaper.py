"""The idle reaper against an in-memory fake of what it reaps, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from nimbus.common.clock import FakeClock
from nimbus.nodeagent.reaper import reap_loop, reap_once

pytestmark = pytest.mark.timeout(10)


class FakeNode:
    """Instances as plain data: id → (last used, exited, busy)."""

    def __init__(self, instances: dict[str, tuple[float, bool, bool]]) -> None:
        self.instances = instances
        self.reaped: list[tuple[str, bool]] = []
        self.fail_next = False

    def idle_since(self) -> dict[str, float]:
        return {i: used for i, (used, _, busy) in self.instances.items() if not busy}

    def exited(self) -> list[str]:
        return [i for i, (_, exited, busy) in self.instances.items() if exited and not busy]

    async def reap(self, instance_id: str, *, failed: bool = False) -> bool:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("etcd hiccup")
        if instance_id not in self.instances or self.instances[instance_id][2]:
            return False
        del self.instances[instance_id]
        self.reaped.append((instance_id, failed))
        return True


class StoppingClock(FakeClock):
    """Ends the loop under test (CancelledError) at its sleep number stop_after + 1."""

    def __init__(self, stop_after: int) -> None:
        super().__init__(1000.0)
        self.stop_after = stop_after

    async def sleep(self, seconds: float) -> None:
        if len(self.slept) >= self.stop_after:
            raise asyncio.CancelledError
        await super().sleep(seconds)


async def test_reaps_idle_and_exited_not_busy_or_fresh() -> None:
    node = FakeNode(
        {
            "old": (100.0, False, False),
            "older": (50.0, False, False),
            "fresh": (995.0, False, False),
            "crashed": (999.0, True, False),
            "busy-old": (10.0, False, True),
        }
    )
    reaped = await reap_once(node, now=1000.0, idle_s=600)
    assert reaped == ["crashed", "older", "old"]
    assert node.reaped == [("crashed", True), ("older", False), ("old", False)]
    assert set(node.instances) == {"fresh", "busy-old"}


async def test_loop_survives_a_failed_step_and_uses_the_clock() -> None:
    node = FakeNode({"a": (1000.0, False, False)})
    node.fail_next = True
    clock = StoppingClock(stop_after=5)
    with pytest.raises(asyncio.CancelledError):
        await reap_loop(node, clock, idle_s=8)  # checks every 2 s of fake time
    # t=1002..1006: not idle long enough; t=1008: due, but the step fails and is logged;
    # t=1010: reaped.
    assert node.reaped == [("a", False)]
    assert clock.t == 1010.0
