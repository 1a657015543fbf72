"""Wires the triggers for main.py: the watch of every trigger in etcd, the timers, the NATS
subjects, and the HTTP triggers' handler (the HTTP listener routes /fn/… to it). No logic here.

Timers and subjects submit async events (events/); HTTP triggers run sync calls (sync/).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from nimbus.common import keys
from nimbus.common.clock import Clock
from nimbus.common.etcd import KV, Etcd, WatchCache
from nimbus.common.triggers import TriggerRecord
from nimbus.invoker.triggers.http import HttpTriggers, Runner
from nimbus.invoker.triggers.subject import Bus, SubjectTriggers
from nimbus.invoker.triggers.timer import Enqueuer, TimerTriggers
from nimbus.invoker.triggers.view import HttpIndex


def _trigger(kv: KV) -> TriggerRecord:
    return TriggerRecord.from_json(kv.value)


class TriggerSystem:
    def __init__(
        self, etcd: Etcd, bus: Bus, submitter: Enqueuer, runner: Runner, clock: Clock
    ) -> None:
        self.records: WatchCache[TriggerRecord] = WatchCache(
            etcd, keys.all_triggers_prefix(), _trigger
        )
        http_index = HttpIndex()
        self.records.listeners.append(http_index.on_change)
        self.timers = TimerTriggers(self.records, submitter, clock)
        self.subjects = SubjectTriggers(self.records, bus, submitter, clock.monotonic)
        self.http = HttpTriggers(http_index.get, runner, clock)

    @property
    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.records.run, self.timers.run, self.subjects.run]

    async def ready(self, timeout_s: float) -> None:
        await self.records.wait_ready(timeout_s)
