"""Every service survives kill -9 of itself and converges again; SIGTERM drains in-flight calls."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from nimbus.internal.v1 import invoker_pb2, invoker_pb2_grpc

from tests.support import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]

SLOW = {
    "main.py": (
        "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return 'done'\n"
    )
}
ECHO = {"main.py": "def handler(event, context):\n    return event\n"}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def calls_at_invokers(cluster, name: str) -> int:
    total = 0
    for replica in ("invoker-1", "invoker-2"):
        async with cluster.channel(replica) as channel:
            stats = await invoker_pb2_grpc.InvokerControlStub(channel).GetStats(
                invoker_pb2.GetStatsRequest(), timeout=2
            )
        total += sum(f.queued + f.in_flight for f in stats.functions if f.function == name)
    return total


async def eventually_async(probe, want: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    seen = None
    while time.monotonic() < deadline:
        seen = await probe()
        if seen >= want:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"saw {seen}, wanted {want} within {timeout_s}s")


@pytest.mark.parametrize(
    "victim", ["invoker-1", "api-1", "funcmgr", "scheduler-1", "node-agent-1", "etcd"]
)
async def test_kill_9_of_a_service_converges(cluster, gw, victim):
    name = unique("k9")
    assert gw.create(name, ECHO).status == 200
    assert gw.invoke(name, {"before": victim}).status == 200
    old_pid = cluster.pid(victim)
    cluster.kill(victim, signal.SIGKILL)
    await eventually(lambda: cluster.pid(victim) not in (0, old_pid), timeout_s=30)
    await cluster.wait_healthy(victim, timeout_s=30)
    # Both planes answer again: a new function deploys and runs, the old one still runs.
    fresh = unique("after")
    await eventually(lambda: gw.create(fresh, ECHO).status == 200)
    await eventually(lambda: gw.invoke(fresh, {"after": victim}).json() == {"after": victim})
    await eventually(lambda: gw.invoke(name, {"again": 1}).json() == {"again": 1})


async def test_sigterm_drains_in_flight_calls(cluster, gw):
    name = unique("drain")
    assert gw.create(name, SLOW, timeout_s=30).status == 200
    # Warm a couple of instances so the calls below are in flight at the invokers at once.
    assert gw.invoke(name, {"s": 0}).status == 200

    async def call():
        return await asyncio.to_thread(gw.invoke, name, {"s": 2})

    calls = [asyncio.create_task(call()) for _ in range(4)]
    # Signal only once every call has reached an invoker (queued or running there).
    await eventually_async(lambda: calls_at_invokers(cluster, name), want=4)
    for victim in ("invoker-1", "invoker-2"):
        cluster.kill(victim, signal.SIGTERM)
    results = await asyncio.gather(*calls)
    assert [r.status for r in results] == [200] * 4, [r.body for r in results]
    assert all(r.json() == "done" for r in results)
    for victim in ("invoker-1", "invoker-2"):
        await cluster.wait_healthy(victim, timeout_s=30)
    await eventually(lambda: gw.invoke(name, {"s": 0}).status == 200)
