"""A batch's calls count against the key's rate (issue 15.5): the gateway counts a batch as one
request, so the invoker counts the rest, per key and second, in a real Redis shared by replicas."""

from __future__ import annotations

import pytest
from nimbus.common.auth import Principal
from nimbus.common.clock import FakeClock
from nimbus.common.errors import Throttled
from nimbus.invoker.stores.itembudget import RedisItemBudget
from nimbus.invoker.sync.batch import BatchInvoker, BatchItem
from nimbus.invoker.sync.invoke import InvokeResult

pytestmark = pytest.mark.timeout(60)


class Echo:
    def __init__(self) -> None:
        self.calls = 0

    async def invoke(
        self, who: Principal, name: str, qualifier: str, payload: bytes, deadline_s: float
    ) -> InvokeResult:
        self.calls += 1
        return InvokeResult("rid", payload, "", 1, 1, False, "$LATEST")


async def test_batches_past_the_keys_rate_are_refused_across_replicas(redis_url: str) -> None:
    clock = FakeClock(1_800_000_000.0, advance_on_sleep=False)
    budgets = [RedisItemBudget(redis_url), RedisItemBudget(redis_url)]
    echo = Echo()
    replicas = [BatchInvoker(echo, budget=b, key_rps=100, clock=clock) for b in budgets]
    who, other = Principal("ns", "key-1", False), Principal("ns", "key-2", False)
    items = [BatchItem("echo", "", b"{}")] * 50
    try:
        # 49 + 49 counted (each batch's first call is the gateway's request): 98 of 100.
        assert len(await replicas[0].invoke_all(who, items, 10.0)) == 50
        assert len(await replicas[1].invoke_all(who, items, 10.0)) == 50
        with pytest.raises(Throttled, match=r"over its rate of 100 calls per second"):
            await replicas[0].invoke_all(who, items, 10.0)
        assert echo.calls == 100  # the refused batch ran nothing
        # Another key has its own budget; the next second starts afresh.
        assert len(await replicas[1].invoke_all(other, items, 10.0)) == 50
        clock.t += 1
        assert len(await replicas[0].invoke_all(who, items, 10.0)) == 50
        # A single call costs the budget nothing beyond the gateway's count.
        assert len(await replicas[0].invoke_all(who, items[:1], 10.0)) == 1
    finally:
        for b in budgets:
            await b.close()


async def test_redis_away_fails_open() -> None:
    budget = RedisItemBudget("redis://127.0.0.1:9/0")
    batch = BatchInvoker(Echo(), budget=budget, key_rps=1)
    try:
        out = await batch.invoke_all(
            Principal("ns", "k", False), [BatchItem("e", "", b"{}")] * 5, 5
        )
        assert len(out) == 5
    finally:
        await budget.close()
