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
from nimbus.common.errors import InvalidArgument, NimbusError
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


class BatchInvoker:
    def __init__(self, invoker: SyncInvoker, max_parallel: int = DEFAULT_PARALLEL) -> None:
        self._invoker = invoker
        self._max_parallel = max_parallel

    async def invoke_all(
        self, who: Principal, items: Sequence[BatchItem], deadline_s: float
    ) -> list[BatchOutcome]:
        if not 1 <= len(items) <= MAX_ITEMS:
            raise InvalidArgument(f"items: {len(items)} calls; a batch holds 1 to {MAX_ITEMS}")
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
