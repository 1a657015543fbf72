"""Mutual TLS for every gRPC hop inside the cluster: the process's identity, who may call what,
the interceptor that checks it, and channels that follow certificate rotations.

Every service builds its server and channels through nimbus.common.service, which uses this
module; nothing else in a service changes. The identity is the replica's certificate
(nimbus.common.pki) under NIMBUS_PKI_DIR (default $NIMBUS_HOME/pki) named by NIMBUS_REPLICA.
`NIMBUS_ALLOW_PLAINTEXT=1` runs without TLS and without caller checks: for tests that start one
service alone and for development only; the local cluster never sets it.

Refusals: a caller without a certificate from the cluster CA never completes the TLS handshake
(the server requires one), so no byte of its call reaches a service (its client sees UNAVAILABLE,
"handshake failed"); a caller with a valid certificate of a service the method is not for gets
PERMISSION_DENIED, and one whose certificate names no service UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from nimbus.common import pki
from nimbus.common.config import ConfigError

log = logging.getLogger(__name__)

ALLOW_PLAINTEXT_VAR = "NIMBUS_ALLOW_PLAINTEXT"
# The CALLERS key of the invoker's HTTP listener.
INVOKER_HTTP = "/nimbus.invoker.http/"
ANY_PEER = "*"

# Who may call what: the first matching method prefix wins; a method no prefix matches is refused.
# Services are the [[process]] names of deploy/local/cluster.toml; "envoy" is the gateway,
# "operator" the launcher's health checks and admin tools (pki.OPERATOR).
CALLERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("/grpc.health.v1.Health/", frozenset({ANY_PEER})),
    # The api reads a package for GET /v1/functions/{name}/code (after its namespace check).
    ("/nimbus.internal.v1.FunctionManager/FetchCode", frozenset({"node-agent", "api"})),
    ("/nimbus.internal.v1.FunctionManager/", frozenset({"api"})),
    ("/nimbus.internal.v1.Scheduler/", frozenset({"invoker"})),
    ("/nimbus.internal.v1.NodeAgent/CreateInstance", frozenset({"scheduler"})),
    ("/nimbus.internal.v1.NodeAgent/DestroyInstance", frozenset({"scheduler"})),
    ("/nimbus.internal.v1.NodeAgent/", frozenset({"invoker"})),
    ("/nimbus.internal.v1.InvokerControl/", frozenset({pki.OPERATOR})),
    ("/nimbus.api.", frozenset({"envoy"})),
    # Not gRPC: the invoker's HTTP/1.1 listener (REST invoke, HTTP triggers) behind Envoy.
    (INVOKER_HTTP, frozenset({"envoy"})),
)

# How often a process looks for a rotated certificate (a stat of two files).
RELOAD_INTERVAL_S = 2.0
# How long a channel built on an older certificate keeps serving the calls begun on it.
OLD_CHANNEL_GRACE_S = 600.0


def allowed_callers(method: str) -> frozenset[str]:
    for prefix, callers in CALLERS:
        if method.startswith(prefix):
            return callers
    return frozenset()


# -- the process's identity ------------------------------------------------------------------

_identity: pki.Identity | None = None
_configured = False


def configure(env: Mapping[str, str] | None = None) -> pki.Identity | None:
    """Loads this process's identity from the environment once (later calls return it); None
    when NIMBUS_ALLOW_PLAINTEXT=1. Raises ConfigError when there is no certificate."""
    global _identity, _configured
    if _configured:
        return _identity
    env = os.environ if env is None else env
    if env.get(ALLOW_PLAINTEXT_VAR, "").strip() == "1":
        log.warning(
            "NIMBUS_ALLOW_PLAINTEXT=1: internal calls are neither encrypted nor authenticated"
        )
        _identity, _configured = None, True
        return None
    replica = env.get("NIMBUS_REPLICA", "").strip()
    home = env.get("NIMBUS_HOME", "").strip() or ".nimbus"
    pki_dir = Path(env.get("NIMBUS_PKI_DIR", "").strip() or Path(home) / "pki")
    if not replica:
        raise ConfigError(
            "NIMBUS_REPLICA is not set: it names this replica's certificate under "
            f"{pki_dir}/replicas (or set {ALLOW_PLAINTEXT_VAR}=1 for development)"
        )
    try:
        _identity = pki.Identity(pki_dir, replica)
    except FileNotFoundError:
        raise ConfigError(
            f"no certificate for replica {replica!r} at {pki.identity_file(pki_dir, replica)} "
            f"(NIMBUS_PKI_DIR={pki_dir}): `make up` issues one; {ALLOW_PLAINTEXT_VAR}=1 runs "
            "without TLS, for development only"
        ) from None
    _configured = True
    return _identity


def reset_for_tests(identity: pki.Identity | None = None) -> None:
    """Installs `identity` (or plaintext with None) as this process's; for in-process tests."""
    global _identity, _configured
    _identity, _configured = identity, True


async def follow_rotations(identity: pki.Identity, interval_s: float = RELOAD_INTERVAL_S) -> None:
    """Re-reads the identity whenever its files change (a background task of every service)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            before = identity.generation
            identity.reload()
            if identity.generation != before:
                log.info(
                    "certificate rotated",
                    extra={"fields": {"replica": identity.replica, "gen": identity.generation}},
                )
        except Exception:
            log.exception("cannot reload the certificate; keeping the current one")


# -- plain TLS sockets (the node-agent's invoke lane) -----------------------------------------

_contexts: dict[tuple[bool, str], ssl.SSLContext] = {}


def ssl_server_context() -> ssl.SSLContext | None:
    """A server SSLContext that requires a client certificate of the cluster CA (None in
    plaintext mode); check the caller with `socket_caller` once connected."""
    return _ssl_context(server=True, peer_service="")


def ssl_client_context(peer_service: str) -> ssl.SSLContext | None:
    """A client SSLContext with this replica's certificate; pass
    server_hostname=pki.server_name(peer_service) so the server must be that service."""
    return _ssl_context(server=False, peer_service=peer_service)


def _ssl_context(*, server: bool, peer_service: str) -> ssl.SSLContext | None:
    identity = configure()
    if identity is None:
        return None
    key = (server, peer_service)
    ctx = _contexts.get(key)
    if ctx is None:
        ctx = _contexts[key] = identity.ssl_context(
            server=server, peer_service=peer_service or None
        )
    return ctx


def socket_refusal(transport: asyncio.BaseTransport, method: str) -> str:
    """Why the peer of a TLS transport may not call `method` (CALLERS), or "" when it may.
    Always "" in plaintext mode."""
    if _identity is None:
        return ""
    peer = pki.peer_from_ssl(transport.get_extra_info("ssl_object"))
    if peer is None:
        return "no cluster certificate names the caller"
    allowed = allowed_callers(method)
    if ANY_PEER in allowed or peer.service in allowed:
        return ""
    return f"{peer.service} may not call {method}"


# -- servers ---------------------------------------------------------------------------------


def server_credentials(identity: pki.Identity) -> grpc.ServerCredentials:
    """Requires a client certificate from the cluster CA; each new handshake uses the newest
    certificate (grpc asks `fetch` before each one)."""

    def config() -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(identity.key_pem, identity.cert_pem)], root_certificates=identity.ca_pem
        )

    served = [identity.generation]

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        identity.reload()
        if identity.generation == served[0]:
            return None
        served[0] = identity.generation
        return config()

    # grpc-stubs omits the None that means "no change" (grpc's own docstring allows it).
    return grpc.dynamic_ssl_server_credentials(
        config(),
        fetch,  # type: ignore[arg-type]
        require_client_authentication=True,
    )


# -- channels --------------------------------------------------------------------------------


def channel_credentials(identity: pki.Identity) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(identity.ca_pem, identity.key_pem, identity.cert_pem)


class _RotatingCallable:
    """A stub method bound to whichever channel is current at the time of each call."""

    __slots__ = ("_owner", "_kind", "_args", "_kwargs", "_gen", "_callable")

    def __init__(
        self, owner: RotatingChannel, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self._owner = owner
        self._kind = kind
        self._args = args
        self._kwargs = kwargs
        self._gen = -1
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ch, gen = self._owner.current()
        if gen != self._gen:
            self._callable = getattr(ch, self._kind)(*self._args, **self._kwargs)
            self._gen = gen
        return self._callable(*args, **kwargs)


class RotatingChannel(grpc.aio.Channel):
    """A grpc.aio.Channel over a TLS channel rebuilt when the process's certificate rotates:
    new calls go to the new channel; the old one is closed once its calls had
    OLD_CHANNEL_GRACE_S to finish. Stubs built on it keep working across rotations."""

    def __init__(
        self, open_: Callable[[grpc.ChannelCredentials], grpc.aio.Channel], identity: pki.Identity
    ) -> None:
        self._open = open_
        self._identity = identity
        self._gen = identity.generation
        self._channel = open_(channel_credentials(identity))
        self._closing: set[asyncio.Task[None]] = set()

    def current(self) -> tuple[grpc.aio.Channel, int]:
        gen = self._identity.generation
        if gen != self._gen:
            old = self._channel
            self._channel = self._open(channel_credentials(self._identity))
            self._gen = gen
            task = asyncio.get_running_loop().create_task(old.close(OLD_CHANNEL_GRACE_S))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return self._channel, self._gen

    async def __aenter__(self) -> RotatingChannel:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        for task in list(self._closing):
            task.cancel()
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current()[0].channel_ready()

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _RotatingCallable(self, "unary_unary", args, kwargs)

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _RotatingCallable(self, "unary_stream", args, kwargs)

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        return _RotatingCallable(self, "stream_unary", args, kwargs)

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        return _RotatingCallable(self, "stream_stream", args, kwargs)
