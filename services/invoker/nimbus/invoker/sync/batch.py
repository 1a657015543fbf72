"""Batch invoke (API v2): several sync invokes in one request, on the same Invoker core.

The calls run concurrently (at most `max_parallel` at once, so one batch cannot take every
instance), and each gets its own outcome in request order: a platform error of one call
(unknown function, throttled, no capacity) is that call's outcome and never fails the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, SystemClock
from nimbus.common.errors import InvalidArgument, NimbusError, Throttled
from nimbus.invoker.sync.invoke import InvokeResult

MAX_ITEMS = 100
DEFAULT_PARALLEL = 10


class SyncInvoker(Protocol):
    async def invoke(
        self, who: Principal, name: str, qualifier: str, payload: bytes, deadline_s: float
    ) -> InvokeResult: ...


@dataclass(frozen=True, slots=True)
class BatchItem:
    name: str
    qualifier: str
    # The event as JSON bytes.
    event: bytes


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """Exactly one of result and error is set."""

    result: InvokeResult | None = None
    error: NimbusError | None = None


class ItemBudget(Protocol):
    async def add(self, key_id: str, second: int, calls: int) -> int: ...


class BatchInvoker:
    """`key_rps` (the gateway's per-key rate, NIMBUS_GATEWAY_KEY_RPS) also bounds the calls a key
    sends in batches: the gateway counts a batch as one request, so the other calls of each batch
    are counted here, per key and second across replicas (`budget`), and a batch that would take
    the key over its rate is refused whole."""

    def __init__(
        self,
        invoker: SyncInvoker,
        max_parallel: int = DEFAULT_PARALLEL,
        *,
        budget: ItemBudget | None = None,
        key_rps: int = 0,
        clock: Clock | None = None,
    ) -> None:
        self._invoker = invoker
        self._max_parallel = max_parallel
        self._budget = budget
        self._key_rps = key_rps
        self._clock = clock or SystemClock()

    async def _count(self, who: Principal, calls: int) -> None:
        if self._budget is None or not self._key_rps or calls <= 1:
            return
        total = await self._budget.add(who.key_id, int(self._clock.now()), calls - 1)
        if total > self._key_rps:
            raise Throttled(
                f"Rate exceeded: a batch of {calls} calls takes this key over its rate of"
                f" {self._key_rps} calls per second (NIMBUS_GATEWAY_KEY_RPS); send fewer at once",
                retry_after_s=1,
            )

    async def invoke_all(
        self, who: Principal, items: Sequence[BatchItem], deadline_s: float
    ) -> list[BatchOutcome]:
        if not 1 <= len(items) <= MAX_ITEMS:
            raise InvalidArgument(f"items: {len(items)} calls; a batch holds 1 to {MAX_ITEMS}")
        await self._count(who, len(items))
        gate = asyncio.Semaphore(self._max_parallel)

        async def one(item: BatchItem) -> BatchOutcome:
            async with gate:
                try:
                    return BatchOutcome(
                        result=await self._invoker.invoke(
                            who, item.name, item.qualifier, item.event, deadline_s
                        )
                    )
                except NimbusError as err:
                    return BatchOutcome(error=err)

        return list(await asyncio.gather(*(one(item) for item in items)))
