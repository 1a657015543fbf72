"""The max_async_backlog quota at the async front door (nimbus.common.quotas).

A namespace's backlog is its events still in the work-queue stream (accepted, not yet finished).
Reading it is one JetStream request, so a replica reads it at most every FRESH_S per namespace
and counts its own accepts in between; replicas accepting at the same instant may overshoot the
quota by what each accepted since its last read. Namespaces without the quota cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nimbus.common.clock import Clock
from nimbus.common.quotas import Quotas, backlog_over
from nimbus.invoker.events import envelope

FRESH_S = 0.5
# Namespaces whose last count a replica keeps.
_KEPT_MAX = 4096


class EventCounter(Protocol):
    async def count_events(self, subject_filter: str) -> int: ...


@dataclass(slots=True)
class _Count:
    events: int
    read_at: float


class BacklogGate:
    def __init__(
        self, quotas: Callable[[str], Quotas | None], counter: EventCounter, clock: Clock
    ) -> None:
        self._quotas = quotas
        self._counter = counter
        self._clock = clock
        self._counts: dict[str, _Count] = {}

    async def admit(self, namespace: str) -> None:
        """Returns if one more event of the namespace fits its quota; raises Throttled if not."""
        quotas = self._quotas(namespace)
        if quotas is None or not quotas.max_async_backlog:
            return
        now = self._clock.monotonic()
        count = self._counts.get(namespace)
        if count is None or now - count.read_at > FRESH_S:
            events = await self._counter.count_events(envelope.events_filter(namespace))
            if len(self._counts) >= _KEPT_MAX:
                self._counts.clear()
            count = self._counts[namespace] = _Count(events, now)
        refusal = backlog_over(quotas, count.events)
        if refusal is not None:
            raise refusal
        count.events += 1
