"""The node-agent's JetStream adapter for function logs: one connection, the NIMBUS_LOGS stream
(nimbus.common.logstream) made sure of at every (re)connect, publishes with de-duplication.

Connecting is lazy and bounded: the shipper's publish connects when there is no connection and
raises Unavailable when NATS cannot be reached, so the shipper backs off and keeps its files.
"""

from __future__ import annotations

import asyncio
import logging

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.client import JetStreamContext

from nimbus.common import logstream, natsconn
from nimbus.common.errors import Unavailable
from nimbus.common.logs import kv

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 5.0
_MSG_ID = "Nats-Msg-Id"
_ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


class LogStreamPublisher:
    def __init__(self, url: str, *, name: str, retention_h: float, max_mb: int) -> None:
        self._url = url
        self._name = name
        self._retention_h = retention_h
        self._max_mb = max_mb
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        # Cleared at every reconnect: a nats-server with a wiped store comes back without the stream.
        self._stream_ok = False

    async def publish(self, subject: str, data: bytes, msg_id: str) -> bool:
        """Stores one message; True when JetStream already had it (a re-send after a restart)."""
        js = await self._connected()
        try:
            ack = await js.publish(subject, data, timeout=CALL_TIMEOUT_S, headers={_MSG_ID: msg_id})
        except _ERRORS as err:
            raise Unavailable(f"NATS publish failed: {type(err).__name__}: {err}") from err
        return bool(ack.duplicate)

    async def _connected(self) -> JetStreamContext:
        try:
            if self._nc is None or self._nc.is_closed:
                self._stream_ok = False
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    self._nc = await natsconn.connect(
                        self._url, self._name, error_cb=self._on_error, reconnected_cb=self._on_reconnected
                    )
                self._js = self._nc.jetstream(timeout=CALL_TIMEOUT_S)
            assert self._js is not None
            if not self._stream_ok:
                async with asyncio.timeout(CALL_TIMEOUT_S * 2):
                    await logstream.ensure_stream(self._js, self._retention_h, self._max_mb)
                self._stream_ok = True
            return self._js
        except _ERRORS as err:
            raise Unavailable(f"NATS at {self._url} not reachable: {type(err).__name__}: {err}") from err

    async def _on_error(self, err: Exception) -> None:
        log.debug("NATS client error", extra=kv(error=f"{type(err).__name__}: {err}"))

    async def _on_reconnected(self) -> None:
        self._stream_ok = False

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                async with asyncio.timeout(2):
                    await nc.drain()
            except Exception:
                await nc.close()
