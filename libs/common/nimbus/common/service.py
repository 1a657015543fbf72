"""The lifecycle every service shares: serve gRPC with health, run
background loops, drain on SIGTERM.

Order on SIGTERM: health NOT_SERVING (Envoy stops sending) → the replica leaves the service
registry (nimbus.common.registry), and a replica behind the gateway keeps serving a moment
(NIMBUS_DEREGISTER_WAIT_S) so Envoy drops it before it refuses anything → server.stop(grace) lets
in-flight calls finish → the background tasks are cancelled → `on_stop` closes clients. One crashed
task cancels the rest and the process exits non-zero, so the supervisor restarts it.

Every replica registers itself once SERVING: its address, service and the public API versions it
serves (`api_versions`), under an etcd lease of its own.

Telemetry: with `metrics_addr` (NIMBUS_METRICS_ADDR) the replica serves Prometheus text there and
records the address in its registry entry; traces go to OTEL_EXPORTER_OTLP_ENDPOINT when it is set
(nimbus.common.tracing), flushed last on the way out.

`run` starts the process's event loop: uvloop, or asyncio's with NIMBUS_EVENT_LOOP=asyncio
(nimbus.common.eventloop).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, Generic, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from nimbus.common import eventloop, metrics, mtls, pki, tracing
from nimbus.common.clock import SystemClock
from nimbus.common.config import CONFIG_ERROR_PREFIX, EXIT_CONFIG, ConfigError
from nimbus.common.interceptors import PeerCheckInterceptor
from nimbus.common.registry import RegistryConfig, new_registration

log = logging.getLogger(__name__)

# Large enough for a 50 MB zip as base64 in one call, plus headroom.
MAX_MESSAGE_BYTES = 96 * 1024 * 1024

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.keepalive_permit_without_calls", 1),
    # Reconnect fast after a peer restarts (the default backoff grows to minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2_000),
    ("grpc.min_reconnect_backoff_ms", 100),
]

SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def channel(address: str, service: str) -> grpc.aio.Channel:
    """A channel to one address, or to every replica of "ip:port,ip:port" with round-robin
    balancing: a dead replica's calls fail over to the next without a restart.

    Mutual TLS (nimbus.common.mtls) with this process's certificate; the server must prove it is
    a replica of `service`. The channel follows certificate rotations."""
    options = list(CHANNEL_OPTIONS)
    target = address
    if "," in address:
        target = "ipv4:" + ",".join(a.strip() for a in address.split(",") if a.strip())
        options.append(("grpc.lb_policy_name", "round_robin"))
    identity = mtls.configure()
    if identity is None:
        return grpc.aio.insecure_channel(target, options=options)
    options.append(("grpc.ssl_target_name_override", pki.server_name(service)))
    return mtls.RotatingChannel(
        lambda creds: grpc.aio.secure_channel(target, creds, options=options), identity
    )


StubT = TypeVar("StubT")


class StubCache(Generic[StubT]):
    """One channel and stub per peer address (node-agents come and go), opened on first use."""

    def __init__(self, make_stub: Callable[[grpc.aio.Channel], StubT], service: str) -> None:
        self._make_stub = make_stub
        self._service = service
        self._entries: dict[str, tuple[grpc.aio.Channel, StubT]] = {}

    def get(self, address: str) -> StubT:
        entry = self._entries.get(address)
        if entry is None:
            ch = channel(address, self._service)
            entry = self._entries[address] = (ch, self._make_stub(ch))
        return entry[1]

    async def close(self) -> None:
        entries, self._entries = self._entries, {}
        for ch, _ in entries.values():
            await ch.close()


class _Stop(Exception):
    """Raised inside the task group to end it after a clean drain."""


def new_server(
    interceptors: Sequence[grpc.aio.ServerInterceptor],
) -> tuple[grpc.aio.Server, health.aio.HealthServicer]:
    """The server every service runs. With mutual TLS (the default) the caller check of
    nimbus.common.mtls runs first, before the given interceptors."""
    chain = list(interceptors)
    if mtls.configure() is not None:
        chain.insert(0, PeerCheckInterceptor())
    server = grpc.aio.server(interceptors=chain, options=SERVER_OPTIONS)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    return server, health_servicer


async def serve(
    *,
    name: str,
    server: grpc.aio.Server,
    health_servicer: health.aio.HealthServicer,
    listen_addr: str,
    background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ready: Callable[[], Awaitable[object]] | None = None,
    drain: Callable[[], Awaitable[None]] | None = None,
    on_stop: Callable[[], Awaitable[None]] | None = None,
    grace_s: float = 10.0,
    api_versions: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    metrics_addr: str = "",
    http_addr: str = "",
) -> None:
    """Runs until SIGTERM/SIGINT; raises if any background task fails.

    `api_versions`: the public API versions this replica serves behind the gateway (empty for an
    internal service). `env`: where the registry settings come from (default os.environ; see
    nimbus.common.registry.RegistryConfig, and the OTEL_* variables of nimbus.common.tracing).
    `metrics_addr`: where to serve GET /metrics ("" serves nothing). `http_addr`: the replica's
    HTTP/1.1 listener, if it has one, registered beside the gRPC address so the gateway routes to
    it and stops when it drains."""
    identity = mtls.configure(env)
    if identity is None:
        port = server.add_insecure_port(listen_addr)
    else:
        port = server.add_secure_port(listen_addr, mtls.server_credentials(identity))
        background = [*background, lambda: mtls.follow_rotations(identity)]
    if port == 0:
        raise RuntimeError(f"{name}: cannot listen on {listen_addr}")
    clock = SystemClock()
    env = os.environ if env is None else env
    registry_cfg = RegistryConfig.from_env(env, name)
    tracing.setup(tracing.TracingConfig.from_env(env, name, registry_cfg.replica))
    registration, registry_etcd = new_registration(
        registry_cfg, name, listen_addr, api_versions, clock, clock.now(), metrics_addr, http_addr
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)

    async def become_ready() -> None:
        if ready is not None:
            await ready()
        # What exists by now (modules, config, clients) lives as long as the process: out of the
        # collector's sight, a full collection stops walking ~60k objects (10-25 ms here).
        gc.freeze()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        if registry_cfg.enabled:
            registration.serving()
        log.info(
            "serving",
            extra={
                "fields": {
                    "service": name,
                    "listen": listen_addr,
                    "event_loop": eventloop.loop_name(loop),
                }
            },
        )

    async def wait_stop() -> None:
        await stop.wait()
        log.info("draining", extra={"fields": {"service": name, "grace_s": grace_s}})
        await health_servicer.enter_graceful_shutdown()
        was_registered = registration.registered.is_set()
        await registration.deregister()
        if was_registered and api_versions:
            # Envoy drops this endpoint within a moment; until then it still gets calls.
            await asyncio.sleep(registry_cfg.deregister_wait_s)
        if drain is not None:
            try:
                async with asyncio.timeout(grace_s):
                    await drain()
            except TimeoutError:
                log.warning("drain hook did not finish in time")
        await server.stop(grace_s)
        raise _Stop()

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(wait_stop())
            group.create_task(become_ready())
            if registry_cfg.enabled:
                group.create_task(registration.run())
            if metrics_addr:
                group.create_task(metrics.serve_metrics(metrics_addr))
            for task in background:
                group.create_task(task())
    except* _Stop:
        pass
    finally:
        await server.stop(0)
        try:
            async with asyncio.timeout(3):
                await registration.deregister()
                await registry_etcd.close()
        except Exception:
            log.warning("registry client did not close cleanly")
        if on_stop is not None:
            try:
                async with asyncio.timeout(5):
                    await on_stop()
            except Exception:
                log.exception("error while closing clients")
        if tracing.exporting():
            try:
                async with asyncio.timeout(5):
                    await asyncio.to_thread(tracing.shutdown)
            except Exception:
                log.warning("spans not flushed before exit")
        log.info("stopped", extra={"fields": {"service": name}})


def run(
    main: Callable[[], Coroutine[Any, Any, None]], env: Mapping[str, str] | None = None
) -> None:
    """Entry point of every service's __main__: runs `main` on the loop NIMBUS_EVENT_LOOP names
    (nimbus.common.eventloop; uvloop unless it says asyncio)."""
    try:
        factory = eventloop.loop_factory(os.environ if env is None else env)
        # asyncio.run() itself, with a loop factory (asyncio.run takes one only from 3.12 on).
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(main())
    except KeyboardInterrupt:
        pass
    except ConfigError as err:
        # One line that names the variable, not a traceback; the exit status tells the supervisor.
        print(f"{CONFIG_ERROR_PREFIX}{err}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CONFIG) from None
