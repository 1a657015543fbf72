"""Readiness checks, one per kind in cluster.toml. Each returns True/False and never raises."""

from __future__ import annotations

import asyncio
import http.client
import json
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nimbus.common import mtls, pki

HOST = "127.0.0.1"
CHECK_TIMEOUT_S = 1.0


def _http_get(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


async def http_get(port: int, path: str, timeout: float = CHECK_TIMEOUT_S) -> tuple[int, bytes]:
    return await asyncio.to_thread(_http_get, port, path, timeout)


async def etcd(port: int) -> bool:
    status, body = await http_get(port, "/health")
    return status == 200 and json.loads(body).get("health") == "true"


async def nats(port: int) -> bool:
    status, _ = await http_get(port, "/healthz")
    return status == 200


async def envoy(port: int) -> bool:
    status, body = await http_get(port, "/ready")
    return status == 200 and body.strip() == b"LIVE"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one cluster's checks prove themselves with: the launcher's certificate (pki.OPERATOR)
    and its Redis user on the Unix socket. Per cluster: a test process may run several."""

    identity: pki.Identity | None = None
    redis_socket: Path | None = None
    redis_user: str = ""
    redis_password: str = ""


PLAINTEXT = Credentials()


def _resp(*words: str) -> bytes:
    return f"*{len(words)}\r\n".encode() + b"".join(
        f"${len(w.encode())}\r\n{w}\r\n".encode() for w in words
    )


async def redis(port: int, creds: Credentials = PLAINTEXT) -> bool:
    """PING, as the operator's ACL user on the Unix socket (or on the TCP port without one)."""
    if creds.redis_socket is not None:
        opening = asyncio.open_unix_connection(str(creds.redis_socket))
    else:
        opening = asyncio.open_connection(HOST, port)
    reader, writer = await asyncio.wait_for(opening, CHECK_TIMEOUT_S)
    try:
        if creds.redis_socket is not None:
            writer.write(_resp("AUTH", creds.redis_user, creds.redis_password))
            line = await asyncio.wait_for(reader.readline(), CHECK_TIMEOUT_S)
            if line.strip() != b"+OK":
                return False
        writer.write(_resp("PING"))
        line = await asyncio.wait_for(reader.readline(), CHECK_TIMEOUT_S)
        return line.strip() == b"+PONG"
    finally:
        writer.close()


def operator_channel(
    address: str, service: str, identity: pki.Identity | None = None
) -> grpc.aio.Channel:
    """A channel to a replica of `service` with the operator's certificate (plaintext
    without one)."""
    options: list[tuple[str, object]] = [("grpc.enable_http_proxy", 0)]
    if identity is None:
        return grpc.aio.insecure_channel(address, options=options)
    identity.reload()
    options.append(("grpc.ssl_target_name_override", pki.server_name(service)))
    return grpc.aio.secure_channel(address, mtls.channel_credentials(identity), options=options)


async def grpc_health(port: int, service: str = "", identity: pki.Identity | None = None) -> bool:
    async with operator_channel(f"{HOST}:{port}", service, identity) as channel:
        # types-grpcio-health-checking declares HealthStub without its methods.
        check = health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined]
        reply: health_pb2.HealthCheckResponse = await check(
            health_pb2.HealthCheckRequest(service=""), timeout=CHECK_TIMEOUT_S
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING


CHECKS = {"etcd": etcd, "nats": nats, "envoy": envoy}


async def check(kind: str, port: int, service: str = "", creds: Credentials = PLAINTEXT) -> bool:
    """`service`: what a "grpc" check's server must prove it is (its certificate's name)."""
    try:
        if kind == "grpc":
            probe = grpc_health(port, service, creds.identity)
        elif kind == "redis":
            probe = redis(port, creds)
        else:
            probe = CHECKS[kind](port)
        return await asyncio.wait_for(probe, CHECK_TIMEOUT_S * 2)
    except (OSError, TimeoutError, ValueError, http.client.HTTPException, grpc.RpcError):
        return False


async def envoy_upstreams_healthy(admin_port: int, clusters: dict[str, int]) -> bool:
    """Envoy sees `count` healthy hosts in each named cluster (its health checks passed); a service
    name counts the hosts of all its release clusters (api: api_v1 + api_v2)."""
    seen = await envoy_healthy_hosts(admin_port)
    if seen is None:
        return False
    return all(
        sum(v for k, v in seen.items() if k == c or k.startswith(c + "_v")) >= n
        for c, n in clusters.items()
    )


async def envoy_healthy_hosts(admin_port: int) -> dict[str, int] | None:
    """Healthy hosts per Envoy cluster, None when the admin interface does not answer."""
    try:
        status, body = await http_get(admin_port, "/stats?filter=membership_healthy")
    except (OSError, TimeoutError, http.client.HTTPException):
        return None
    if status != 200:
        return None
    seen: dict[str, int] = {}
    for line in body.decode(errors="replace").splitlines():
        name, _, value = line.partition(": ")
        if name.startswith("cluster.") and name.endswith(".membership_healthy"):
            seen[name[len("cluster.") : -len(".membership_healthy")]] = int(value or 0)
    return seen
