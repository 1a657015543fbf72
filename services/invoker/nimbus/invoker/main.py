"""Wires the invoker together; no logic here.

Four paths, each in a room of its own: sync/ (the Invoker core behind every call), events/ (async
events: accept, then run from JetStream), triggers/ (timers, NATS subjects, HTTP triggers) and
http/ (the HTTP/1.1 listener: REST invokes, HTTP triggers, /healthz). The public gRPC services
sit over sync/ and events/; stores/ holds the etcd, Redis and NATS adapters all of them use.
"""

from __future__ import annotations

import asyncio
import os
import random

from nimbus.api.v1 import invocations_pb2_grpc
from nimbus.api.v2 import invocations_pb2_grpc as invocations_v2_pb2_grpc
from nimbus.common import logs, mtls
from nimbus.common.auth import Authenticator
from nimbus.common.clock import SystemClock
from nimbus.common.etcd import Etcd
from nimbus.common.interceptors import AuthInterceptor, ErrorInterceptor, TelemetryInterceptor
from nimbus.common.service import new_server, serve
from nimbus.internal.v1 import invoker_pb2_grpc
from nimbus.invoker import telemetry
from nimbus.invoker.config import InvokerConfig
from nimbus.invoker.events.server import AsyncInvocationsServicer
from nimbus.invoker.events.system import EventSystem
from nimbus.invoker.http.errors import http_status_error
from nimbus.invoker.http.front import HttpFront
from nimbus.invoker.http.rest import PATH_PREFIX as REST_PATH_PREFIX
from nimbus.invoker.http.rest import RestInvoke
from nimbus.invoker.http.server import HttpServer
from nimbus.invoker.stores.functions import CachedFunctions
from nimbus.invoker.stores.instances import instances_cache
from nimbus.invoker.stores.itembudget import RedisItemBudget
from nimbus.invoker.stores.loadreport import LoadReporter
from nimbus.invoker.stores.peers import NodeCaller, SchedulerClient
from nimbus.invoker.stores.quotas import QuotaCache
from nimbus.invoker.stores.redis_slots import RedisSlots
from nimbus.invoker.stores.throttles import ThrottleRecorder
from nimbus.invoker.sync.batch import BatchInvoker
from nimbus.invoker.sync.dispatcher import Dispatcher
from nimbus.invoker.sync.invoke import Invoker
from nimbus.invoker.sync.limits import ConcurrencyLimiter
from nimbus.invoker.sync.load import LoadMeter
from nimbus.invoker.sync.server import InvokerControlServicer
from nimbus.invoker.sync.v2server import InvocationsV2Servicer
from nimbus.invoker.triggers.http import host_namespace
from nimbus.invoker.triggers.system import TriggerSystem


async def main() -> None:
    cfg = InvokerConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port, mtls.configure())
    authenticator = Authenticator(etcd)
    functions = CachedFunctions(etcd)
    quotas = QuotaCache(etcd)
    clock = SystemClock()

    # The sync path.
    instances = instances_cache(etcd)
    scheduler = SchedulerClient(cfg.sync.scheduler_addr)
    nodes = NodeCaller()
    dispatcher = Dispatcher(scheduler, cfg.sync.queue_wait_s, cfg.sync.max_instances_per_fn)
    instances.listeners.append(dispatcher.on_instance)
    slots = RedisSlots(cfg.sync.redis_url)
    limiter = ConcurrencyLimiter(slots, clock, cfg.sync.namespace_concurrency, quotas.of)
    throttles = ThrottleRecorder(cfg.sync.redis_url, clock)
    item_budget = RedisItemBudget(cfg.sync.redis_url)
    telemetry.watch_queues(dispatcher.pools)
    reporter = LoadReporter(etcd, cfg.common.replica, LoadMeter(), dispatcher.pools, clock)
    invoker = Invoker(functions, dispatcher, nodes, limiter, random.random, throttles, clock)

    # The async path, and the triggers that feed it (and the sync path: HTTP triggers).
    events = EventSystem(cfg.events, cfg.common.replica, etcd, functions, invoker, clock, quotas.of)
    triggers = TriggerSystem(etcd, events.jetstream, events.invocations, invoker, clock)

    # The HTTP/1.1 listener: HTTP triggers on a namespace's own host, then REST invokes, then HTTP
    # triggers for every other path.
    rest = RestInvoke(authenticator, invoker, events.invocations)
    front = HttpFront(
        [(REST_PATH_PREFIX, rest.handle)],
        triggers.http.handle,
        (host_namespace, triggers.http.handle_host),
    )
    listener = (
        HttpServer(
            cfg.http.host,
            cfg.http.port,
            front.handle,
            cfg.http.max_body_bytes,
            http_status_error,
            closing=lambda: front.draining,
        )
        if cfg.http.enabled
        else None
    )

    # The gRPC services. (The generated *_pb2_grpc modules carry no annotations.)
    server, health = new_server(
        [
            TelemetryInterceptor(),
            ErrorInterceptor(),
            AuthInterceptor(
                authenticator, public_prefixes=("/grpc.health.v1.", "/nimbus.internal.")
            ),
        ]
    )
    v1_servicer = AsyncInvocationsServicer(invoker, events.invocations, events.publisher)
    if "v1" in cfg.api_versions:
        invocations_pb2_grpc.add_InvocationsServicer_to_server(v1_servicer, server)  # type: ignore[no-untyped-call, unused-ignore]
    if "v2" in cfg.api_versions:
        batch = BatchInvoker(invoker, budget=item_budget, key_rps=cfg.sync.key_rps, clock=clock)
        v2_servicer = InvocationsV2Servicer(v1_servicer, batch)
        invocations_v2_pb2_grpc.add_InvocationsServicer_to_server(v2_servicer, server)  # type: ignore[no-untyped-call, unused-ignore]
    control_servicer = InvokerControlServicer(dispatcher)
    invoker_pb2_grpc.add_InvokerControlServicer_to_server(control_servicer, server)  # type: ignore[no-untyped-call, unused-ignore]

    async def ready() -> None:
        for cache in (authenticator.cache, quotas.cache, *functions.caches, instances):
            await cache.wait_ready(60)
        await events.ready(60)
        await triggers.ready(60)

    async def drain() -> None:
        await asyncio.gather(events.drain(), front.drain())

    async def close() -> None:
        await events.close()
        await reporter.close()
        await slots.close()
        await item_budget.close()
        await throttles.close()
        await dispatcher.close()
        await scheduler.close()
        await nodes.close()
        await etcd.close()

    await serve(
        name="invoker",
        server=server,
        health_servicer=health,
        listen_addr=cfg.listen_addr,
        background=[
            authenticator.cache.run,
            quotas.cache.run,
            *(cache.run for cache in functions.caches),
            instances.run,
            reporter.run,
            throttles.run,
            *events.background,
            *triggers.background,
            *([listener.run] if listener is not None else []),
            lambda: telemetry.sample_backlog(events.jetstream, clock),
        ],
        ready=ready,
        drain=drain,
        on_stop=close,
        grace_s=cfg.common.drain_s,
        metrics_addr=cfg.common.metrics_addr,
        api_versions=cfg.api_versions,
        http_addr=cfg.http.listen_addr,
    )
