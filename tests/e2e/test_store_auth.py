"""The stores take only authenticated clients (issue 16.2): etcd and NATS over mutual TLS with
the cluster's certificates (NATS with per-service users and permissions), Redis on a Unix socket
with an ACL user per service. Plaintext and certificate-less clients are refused."""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from pathlib import Path
from typing import Any

import grpc
import nats
import nats.errors
import pytest
import redis.asyncio as aioredis
import redis.exceptions
from aetcd.rpc import KVStub, RangeRequest
from nimbus.cluster import storeauth
from nimbus.common import pki
from nimbus.common.errors import Unavailable
from nimbus.common.etcd import Etcd


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def identity(cluster: Any, service: str) -> pki.Identity:
    replica = unique(f"probe-{service}")
    cluster.issue_certificate(service, replica)
    return pki.Identity(cluster.layout.pki, replica)


def tls_context(cluster: Any, service: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cluster.layout.pki / "ca.crt"))
    if service is not None:
        d = identity(cluster, service).path.parent
        ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


# -- etcd --------------------------------------------------------------------------------------


async def etcd_get(client: Etcd) -> None:
    async with asyncio.timeout(8):
        await client.get(b"/nimbus/ping")


async def test_etcd_refuses_clients_without_a_cluster_certificate(cluster, tmp_path: Path):
    port = cluster.ports["etcd"]
    plain = Etcd("127.0.0.1", port)
    try:
        with pytest.raises((Unavailable, TimeoutError)):
            await etcd_get(plain)
    finally:
        await plain.close()
    # TLS, but no client certificate: the handshake fails
    ca = (cluster.layout.pki / "ca.crt").read_bytes()
    options = [("grpc.ssl_target_name_override", pki.server_name("etcd"))]
    async with grpc.aio.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca), options=options
    ) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await KVStub(channel).Range(RangeRequest(key=b"/nimbus/ping"), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # another CA's certificate
    rogue = tmp_path / "rogue"
    pki.ensure_identities(rogue, [("api", "api-1")])
    stranger = Etcd("127.0.0.1", port, pki.Identity(rogue, "api-1"))
    try:
        with pytest.raises((Unavailable, TimeoutError)):
            await etcd_get(stranger)
    finally:
        await stranger.close()
    # a certificate of the cluster works
    member = Etcd("127.0.0.1", port, identity(cluster, "api"))
    try:
        await etcd_get(member)
    finally:
        await member.close()


# -- NATS --------------------------------------------------------------------------------------


async def nats_connect(cluster: Any, service: str | None, *, tls: bool = True) -> Any:
    errors: list[Exception] = []

    async def on_error(err: Exception) -> None:
        errors.append(err)

    kwargs: dict[str, Any] = {}
    if tls:
        kwargs["tls"] = tls_context(cluster, service)
        kwargs["tls_hostname"] = pki.server_name("nats")
    nc = await nats.connect(
        f"nats://127.0.0.1:{cluster.ports['nats']}",
        connect_timeout=3,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=on_error,
        **kwargs,
    )
    nc.errors_seen = errors  # type: ignore[attr-defined]
    return nc


@pytest.mark.parametrize(
    ("service", "tls"),
    [(None, False), (None, True), ("scheduler", True), ("funcmgr", True), ("envoy", True)],
    ids=["plaintext", "no-client-cert", "scheduler", "funcmgr", "envoy"],
)
async def test_nats_refuses_clients_without_a_nats_identity(cluster, service, tls):
    with pytest.raises(Exception) as err:
        nc = await nats_connect(cluster, service, tls=tls)
        await nc.close()
    assert not isinstance(err.value, AssertionError)


async def denied(nc: Any, subject: str, *, subscribe: bool = False) -> bool:
    """Whether the server answers a publish (or subscribe) on subject with a permissions
    violation."""
    before = len(nc.errors_seen)
    if subscribe:
        await nc.subscribe(subject)
    else:
        await nc.publish(subject, b"x")
    await nc.flush(timeout=3)
    for _ in range(30):
        if any("ermissions" in str(e) for e in nc.errors_seen[before:]):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_nats_permissions_per_service(cluster):
    node = await nats_connect(cluster, "node-agent")
    try:
        # a node-agent may publish logs ...
        assert not await denied(node, "logs.default.fn")
        # ... and may not consume events, dead letters or the invoker's consumers
        assert await denied(node, "nimbus.events.>", subscribe=True)
        assert await denied(node, "nimbus.dlq.>", subscribe=True)
        assert await denied(node, "$JS.API.CONSUMER.MSG.NEXT.NIMBUS_EVENTS.invokers")
        assert await denied(node, "nimbus.events.default.fn")
        # ... nor reconfigure the events or dead-letter streams
        assert await denied(node, "$JS.API.STREAM.UPDATE.NIMBUS_EVENTS")
        assert await denied(node, "$JS.API.STREAM.UPDATE.NIMBUS_DLQ")
    finally:
        await node.close()
    invoker = await nats_connect(cluster, "invoker")
    try:
        assert not await denied(invoker, "nimbus.events.default.fn")
        # the invoker may not touch the log stream: config, consumers, subjects
        assert await denied(invoker, "$JS.API.STREAM.UPDATE.NIMBUS_LOGS")
        assert await denied(invoker, "$JS.API.STREAM.DELETE.NIMBUS_LOGS")
        assert await denied(invoker, "$JS.API.CONSUMER.CREATE.NIMBUS_LOGS")
        assert await denied(invoker, "logs.default.fn")
        assert await denied(invoker, "logs.>", subscribe=True)
        # nor write or read the usage records that bill calls
        assert await denied(invoker, "nimbus.usage.default.fn")
        assert await denied(invoker, "$JS.API.CONSUMER.CREATE.NIMBUS_USAGE")
    finally:
        await invoker.close()
    api = await nats_connect(cluster, "api")
    try:
        assert not await denied(api, "$JS.API.STREAM.INFO.NIMBUS_LOGS")
        assert await denied(api, "nimbus.events.default.fn")
        assert await denied(api, "$JS.API.STREAM.DELETE.NIMBUS_EVENTS")
    finally:
        await api.close()


# -- Redis -------------------------------------------------------------------------------------


def test_redis_has_no_tcp_port(cluster):
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", cluster.ports["redis"]), timeout=2).close()
    sock_dir = cluster.layout.redis_socket.parent
    assert sock_dir.stat().st_mode & 0o777 == 0o700


async def test_redis_takes_only_its_acl_users(cluster):
    path = str(cluster.layout.redis_socket)
    passwords = storeauth.redis_passwords(cluster.layout.pki)
    anonymous = aioredis.Redis(unix_socket_path=path)
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await anonymous.get("x")
    finally:
        await anonymous.aclose()
    wrong = aioredis.Redis(unix_socket_path=path, username="invoker", password="guess")
    try:
        with pytest.raises(redis.exceptions.AuthenticationError):
            await wrong.ping()
    finally:
        await wrong.aclose()
    api = aioredis.Redis(unix_socket_path=path, username="api", password=passwords["api"])
    try:
        assert await api.ping()
        # a service may not reconfigure, flush or stop the server
        for command in (("CONFIG", "SET", "save", ""), ("FLUSHALL",), ("SHUTDOWN",)):
            with pytest.raises(redis.exceptions.NoPermissionError):
                await api.execute_command(*command)
    finally:
        await api.aclose()
