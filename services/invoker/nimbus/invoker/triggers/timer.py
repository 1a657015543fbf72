"""Timer triggers: every invoker replica publishes every tick, and JetStream keeps one.

No leader election: a tick's event carries a message id made of the trigger id and the tick's
scheduled time, so the replicas' copies fall into JetStream's duplicate window and one event is
stored (and one invocation id comes out). A tick is published when it falls due; ticks missed while
every replica was down, or longer ago than GRACE_S when a replica's loop was stalled, are not
replayed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import schedule
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import NimbusError
from nimbus.common.triggers import TriggerRecord, TriggerType
from nimbus.invoker.events import envelope
from nimbus.invoker.triggers.view import TriggerSource, of_type

log = logging.getLogger(__name__)

GRACE_S = 5.0
# The loop wakes at least this often, to see new triggers and a changed clock.
MAX_SLEEP_S = 1.0


@dataclass(frozen=True, slots=True)
class Tick:
    trigger: TriggerRecord
    at: float

    @property
    def invocation_id(self) -> str:
        return envelope.derived_id("timer", self.trigger.trigger_id, repr(self.at))


class Parsed:
    """Parsed schedules by trigger id, reparsed when a trigger's schedule changes."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, schedule.Schedule | None]] = {}

    def get(self, trigger: TriggerRecord) -> schedule.Schedule | None:
        hit = self._cache.get(trigger.trigger_id)
        if hit is not None and hit[0] == trigger.schedule:
            return hit[1]
        try:
            parsed: schedule.Schedule | None = schedule.parse(trigger.schedule)
        except ValueError as err:
            log.warning(
                "timer trigger with a bad schedule ignored",
                extra={"fields": {"trigger": trigger.trigger_id, "error": str(err)}},
            )
            parsed = None
        self._cache[trigger.trigger_id] = (trigger.schedule, parsed)
        return parsed


def due(
    timers: Iterable[TriggerRecord],
    parsed: Parsed,
    after: float,
    now: float,
    grace_s: float = GRACE_S,
) -> list[Tick]:
    """Ticks in (max(after, now - grace_s), now]: those that fell due since the last look, but never
    a backlog of missed ones."""
    start = max(after, now - grace_s)
    out: list[Tick] = []
    for trigger in timers:
        sched = parsed.get(trigger)
        if sched is None:
            continue
        out += [Tick(trigger, at) for at in schedule.ticks_between(sched, start, now, limit=10)]
    return out


def next_wake(timers: Iterable[TriggerRecord], parsed: Parsed, now: float) -> float:
    wake = now + MAX_SLEEP_S
    for trigger in timers:
        sched = parsed.get(trigger)
        if sched is not None:
            wake = min(wake, schedule.next_after(sched, now))
    return wake


def scheduled_event(tick: Tick) -> bytes:
    """The event a timer delivers, shaped like an EventBridge scheduled event."""
    return json.dumps(
        {
            "version": "0",
            "id": tick.invocation_id,
            "detail-type": "Scheduled Event",
            "source": "nimbus.timer",
            "time": iso(tick.at),
            "resources": [tick.trigger.trigger_id],
            "detail": {"schedule": tick.trigger.schedule},
        }
    ).encode()


class Enqueuer(Protocol):
    async def enqueue(
        self,
        namespace: str,
        name: str,
        qualifier: str,
        payload: bytes,
        invocation_id: str,
        msg_id: str,
        source: str,
        depth: int = ...,
    ) -> object: ...


class TimerTriggers:
    def __init__(self, triggers: TriggerSource, submitter: Enqueuer, clock: Clock) -> None:
        self._triggers = triggers
        self._submitter = submitter
        self._clock = clock
        self._parsed = Parsed()

    async def run(self) -> None:
        """Background task; never dies."""
        last = self._clock.now()
        while True:
            try:
                now = self._clock.now()
                timers = of_type(self._triggers, TriggerType.TIMER)
                ticks = due(timers, self._parsed, last, now)
                last = now
                if ticks:
                    await asyncio.gather(*(self._fire(t) for t in ticks))
                wake = next_wake(
                    of_type(self._triggers, TriggerType.TIMER), self._parsed, self._clock.now()
                )
                await self._clock.sleep(max(0.005, wake - self._clock.now() + 0.001))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer loop step failed")
                await self._clock.sleep(MAX_SLEEP_S)

    async def _fire(self, tick: Tick) -> None:
        t = tick.trigger
        try:
            await self._submitter.enqueue(
                t.namespace,
                t.function,
                t.qualifier,
                scheduled_event(tick),
                tick.invocation_id,
                tick.invocation_id,
                "timer",
            )
        except NimbusError as err:
            # The other replica publishes the same tick; if it cannot either, this tick is missed.
            log.warning(
                "timer tick not published",
                extra={"fields": {"trigger": t.trigger_id, "error": err.message}},
            )
