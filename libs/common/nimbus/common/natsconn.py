"""One way to connect to NATS for every service: reconnect forever, notice a dead server within
~10 s (pings), and report what happens through the caller's callbacks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import nats
from nats.aio.client import Client as NatsClient
from nimbus.common import mtls, pki

# The service name of nats-server's certificate.
NATS_SERVICE = "nats"

Callback = Callable[[], Awaitable[None]]
ErrorCallback = Callable[[Exception], Awaitable[None]]


async def connect(
    url: str,
    name: str,
    *,
    error_cb: ErrorCallback,
    reconnected_cb: Callback,
    disconnected_cb: Callback | None = None,
) -> NatsClient:
    options: dict[str, object] = {}
    tls = mtls.ssl_client_context(NATS_SERVICE)
    if tls is not None:
        # mutual TLS; the server maps the certificate to this service's user (its permissions)
        options["tls"] = tls
        options["tls_hostname"] = pki.server_name(NATS_SERVICE)
    if disconnected_cb is not None:
        options["disconnected_cb"] = disconnected_cb
    return await nats.connect(
        servers=[url],
        name=name,
        connect_timeout=2,
        allow_reconnect=True,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        ping_interval=5,
        max_outstanding_pings=2,
        error_cb=error_cb,
        reconnected_cb=reconnected_cb,
        **options,
    )


async def close(nc: NatsClient | None, timeout_s: float) -> None:
    """Drains nc (what was published goes out first), or closes it when draining takes too long."""
    if nc is None or nc.is_closed:
        return
    try:
        async with asyncio.timeout(timeout_s):
            await nc.drain()
    except Exception:
        await nc.close()
