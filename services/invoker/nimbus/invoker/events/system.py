"""Wires the async path and the triggers for main.py: clients, caches, loops. No logic here.

Nothing in it makes the invoker unready: sync invokes work while NATS or Redis are down; async
calls answer 503 until they are back, and the loops reconnect on their own.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

from nimbus.common import keys
from nimbus.common.clock import SystemClock
from nimbus.common.config import get_hostport
from nimbus.common.etcd import KV, Etcd, WatchCache
from nimbus.common.eventconfig import EventConfig
from nimbus.common.triggers import TriggerRecord
from nimbus.invoker.events.config import EventsConfig
from nimbus.invoker.events.consumer import EventConsumer
from nimbus.invoker.events.invocations import AsyncInvocations
from nimbus.invoker.http.front import HttpFront
from nimbus.invoker.http.rest import PATH_PREFIX as REST_PREFIX
from nimbus.invoker.http.rest import Authenticator, RestInvoke
from nimbus.invoker.http.server import HttpServer
from nimbus.invoker.stores.jetstream import JetStreamClient
from nimbus.invoker.stores.redis_records import RedisRecords
from nimbus.invoker.sync.invoke import FunctionLookup, Invoker
from nimbus.invoker.triggers.http import HttpTriggers, http_status_error
from nimbus.invoker.triggers.subject import SubjectTriggers
from nimbus.invoker.triggers.timer import TimerTriggers
from nimbus.invoker.triggers.view import HttpIndex


def _trigger(kv: KV) -> TriggerRecord:
    return TriggerRecord.from_json(kv.value)


def _event_config(kv: KV) -> EventConfig:
    return EventConfig.from_json(kv.value)


class EventSystem:
    def __init__(
        self,
        cfg: EventsConfig,
        replica: str,
        etcd: Etcd,
        functions: FunctionLookup,
        invoker: Invoker,
        authenticator: Authenticator,
    ) -> None:
        clock = SystemClock()
        self.jetstream = JetStreamClient(
            cfg.nats_url, name=replica, ack_wait_s=cfg.ack_wait_s, dlq_max_age_s=cfg.dlq_max_age_s
        )
        self.records = RedisRecords(cfg.redis_url, cfg.record_ttl_s)
        self.triggers: WatchCache[TriggerRecord] = WatchCache(
            etcd, keys.all_triggers_prefix(), _trigger
        )
        self.event_configs: WatchCache[EventConfig] = WatchCache(
            etcd, keys.all_event_configs_prefix(), _event_config
        )
        http_index = HttpIndex()
        self.triggers.listeners.append(http_index.on_change)
        self.invocations = AsyncInvocations(
            functions, self.jetstream, self.records, clock, cfg.max_event_bytes
        )
        self.consumer = EventConsumer(
            self.jetstream,
            self.records,
            invoker,
            functions,
            self.invocations,
            lambda ns, fn: self.event_configs.items.get(keys.event_config(ns, fn)),
            cfg,
            clock,
            random.random,
        )
        self.timers = TimerTriggers(self.triggers, self.invocations, clock)
        self.subjects = SubjectTriggers(self.triggers, self.jetstream, self.invocations)
        self.http: HttpServer | None = None
        triggers = HttpTriggers(http_index.get, invoker, clock)
        rest = RestInvoke(authenticator, invoker, self.invocations)
        self.http_front = HttpFront([(REST_PREFIX, rest.handle)], triggers.handle)
        if cfg.http_listen_addr:
            host, port = get_hostport(
                {"NIMBUS_HTTP_LISTEN_ADDR": cfg.http_listen_addr}, "NIMBUS_HTTP_LISTEN_ADDR", ""
            )
            self.http = HttpServer(
                host,
                port,
                self.http_front.handle,
                cfg.http_max_body_bytes,
                http_status_error,
                closing=lambda: self.http_front.draining,
            )

    @property
    def background(self) -> list[Callable[[], Awaitable[None]]]:
        tasks: list[Callable[[], Awaitable[None]]] = [
            self.jetstream.run,
            self.triggers.run,
            self.event_configs.run,
            self.consumer.run,
            self.timers.run,
            self.subjects.run,
        ]
        if self.http is not None:
            tasks.append(self.http.run)
        return tasks

    async def ready(self, timeout_s: float) -> None:
        for cache in (self.triggers, self.event_configs):
            await cache.wait_ready(timeout_s)

    async def drain(self) -> None:
        await asyncio.gather(self.consumer.drain(), self.http_front.drain())

    async def close(self) -> None:
        await self.jetstream.close()
        await self.records.close()
