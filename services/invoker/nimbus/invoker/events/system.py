"""Wires the async path for main.py: the JetStream and Redis clients, the event configs' watch,
accepting events and the consumer that runs them. No logic here.

Nothing in it makes the invoker unready: sync invokes work while NATS or Redis are down; async
calls answer 503 until they are back, and the loops reconnect on their own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from typing import Any

from nimbus.common import keys
from nimbus.common.clock import Clock
from nimbus.common.etcd import KV, Etcd, WatchCache
from nimbus.common.eventconfig import EventConfig
from nimbus.common.quotas import Quotas
from nimbus.invoker.events.backlog import BacklogGate
from nimbus.invoker.events.config import EventsConfig
from nimbus.invoker.events.consumer import EventConsumer, Runner
from nimbus.invoker.events.invocations import AsyncInvocations
from nimbus.invoker.events.publish import SubjectPublisher
from nimbus.invoker.stores.jetstream import JetStreamClient
from nimbus.invoker.stores.redis_records import RedisRecords
from nimbus.invoker.sync.invoke import FunctionLookup


def _event_config(kv: KV) -> EventConfig:
    return EventConfig.from_json(kv.value)


class EventSystem:
    def __init__(
        self,
        cfg: EventsConfig,
        replica: str,
        etcd: Etcd,
        functions: FunctionLookup,
        runner: Runner,
        clock: Clock,
        quotas: Callable[[str], Quotas | None],
    ) -> None:
        self.jetstream = JetStreamClient(
            cfg.nats_url,
            name=replica,
            ack_wait_s=cfg.ack_wait_s,
            dlq_max_age_s=cfg.dlq_max_age_s,
            caps=cfg.caps,
        )
        self.records = RedisRecords(cfg.redis_url, cfg.record_ttl_s)
        self.event_configs: WatchCache[EventConfig] = WatchCache(
            etcd, keys.all_event_configs_prefix(), _event_config
        )
        self.invocations = AsyncInvocations(
            functions,
            self.jetstream,
            self.records,
            clock,
            cfg.max_event_bytes,
            BacklogGate(quotas, self.jetstream, clock),
        )
        self.publisher = SubjectPublisher(self.jetstream, cfg.max_event_bytes)
        self.consumer = EventConsumer(
            self.jetstream,
            self.records,
            runner,
            functions,
            self.invocations,
            lambda ns, fn: self.event_configs.items.get(keys.event_config(ns, fn)),
            cfg,
            clock,
            random.random,
        )
        self.invocations.on_stored = self.consumer.wake

    @property
    def background(self) -> list[Callable[[], Coroutine[Any, Any, None]]]:
        return [self.jetstream.run, self.event_configs.run, self.consumer.run]

    async def ready(self, timeout_s: float) -> None:
        await self.event_configs.wait_ready(timeout_s)

    async def drain(self) -> None:
        await self.consumer.drain()

    async def close(self) -> None:
        await self.jetstream.close()
        await self.records.close()
