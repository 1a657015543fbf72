"""Wires the invoker together; no logic here."""

from __future__ import annotations

import os
import random

from nimbus.api.v1 import invocations_pb2_grpc
from nimbus.api.v2 import invocations_pb2_grpc as invocations_v2_pb2_grpc
from nimbus.common import logs
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
from nimbus.invoker.stores.functions import CachedFunctions
from nimbus.invoker.stores.instances import instances_cache
from nimbus.invoker.stores.loadreport import LoadReporter
from nimbus.invoker.stores.peers import NodeCaller, SchedulerClient
from nimbus.invoker.stores.redis_slots import RedisSlots
from nimbus.invoker.stores.throttles import ThrottleRecorder
from nimbus.invoker.sync.batch import BatchInvoker
from nimbus.invoker.sync.dispatcher import Dispatcher
from nimbus.invoker.sync.invoke import Invoker
from nimbus.invoker.sync.limits import ConcurrencyLimiter
from nimbus.invoker.sync.load import LoadMeter
from nimbus.invoker.sync.server import InvokerControlServicer
from nimbus.invoker.sync.v2server import InvocationsV2Servicer


async def main() -> None:
    cfg = InvokerConfig.from_env(os.environ)
    logs.setup(cfg.common.replica, cfg.common.log_level)
    etcd = Etcd(cfg.common.etcd_host, cfg.common.etcd_port)
    authenticator = Authenticator(etcd)
    functions = CachedFunctions(etcd)
    instances = instances_cache(etcd)
    scheduler = SchedulerClient(cfg.scheduler_addr)
    nodes = NodeCaller()
    dispatcher = Dispatcher(scheduler, cfg.queue_wait_s, cfg.max_instances_per_fn)
    instances.listeners.append(dispatcher.on_instance)
    clock = SystemClock()
    slots = RedisSlots(cfg.redis_url)
    limiter = ConcurrencyLimiter(slots, clock, cfg.namespace_concurrency)
    throttles = ThrottleRecorder(cfg.redis_url, clock)
    telemetry.watch_queues(dispatcher.pools)
    reporter = LoadReporter(etcd, cfg.common.replica, LoadMeter(), dispatcher.pools, clock)

    server, health = new_server(
        [
            TelemetryInterceptor(),
            ErrorInterceptor(),
            AuthInterceptor(
                authenticator, public_prefixes=("/grpc.health.v1.", "/nimbus.internal.")
            ),
        ]
    )
    invoker = Invoker(functions, dispatcher, nodes, limiter, random.random, throttles, clock)
    events = EventSystem(cfg.events, cfg.common.replica, etcd, functions, invoker, authenticator)
    v1_servicer = AsyncInvocationsServicer(invoker, events.invocations)
    if "v1" in cfg.api_versions:
        invocations_pb2_grpc.add_InvocationsServicer_to_server(v1_servicer, server)
    if "v2" in cfg.api_versions:
        invocations_v2_pb2_grpc.add_InvocationsServicer_to_server(
            InvocationsV2Servicer(v1_servicer, BatchInvoker(invoker)), server
        )
    invoker_pb2_grpc.add_InvokerControlServicer_to_server(
        InvokerControlServicer(dispatcher), server
    )

    async def ready() -> None:
        for cache in (authenticator.cache, *functions.caches, instances):
            await cache.wait_ready(60)
        await events.ready(60)

    async def close() -> None:
        await events.close()
        await reporter.close()
        await slots.close()
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
            *(cache.run for cache in functions.caches),
            instances.run,
            reporter.run,
            throttles.run,
            *events.background,
            lambda: telemetry.sample_backlog(events.jetstream, clock),
        ],
        ready=ready,
        drain=events.drain,
        on_stop=close,
        grace_s=cfg.common.drain_s,
        metrics_addr=cfg.common.metrics_addr,
        api_versions=cfg.api_versions,
        http_addr=cfg.events.http_listen_addr,
    )
