"""The function-log stream on JetStream, shared by its writer (node-agent) and readers (api).

NIMBUS_LOGS holds subjects `logs.<namespace>.<function>`; both names are valid subject tokens
(namespace and function names match [A-Za-z][A-Za-z0-9_-]*). A message body is JSON lines, one
record per line, many records of one function per message, so a busy node publishes a message
per function per flush instead of one per line:

    {"ts": "2026-11-27T01:02:03.456Z", "namespace", "function", "version", "request_id",
     "stream": "stdout"|"stderr"|"platform", "message", "instance_id"}

The REPORT record of each call also carries a structured "report" object, so no consumer parses
text: {"duration_ms", "billed_ms", "memory_mb", "max_memory_used_mb", "cold_start",
"init_duration_ms", "error"}.
"""

from __future__ import annotations

import asyncio
import logging

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import api
from nats.js.client import JetStreamContext
from nimbus.common import natsconn
from nimbus.common.errors import Unavailable

log = logging.getLogger(__name__)

STREAM = "NIMBUS_LOGS"
SUBJECT_PREFIX = "logs"
# Writers publish with Nats-Msg-Id; a node-agent that restarts within this window re-sends a batch
# without duplicating it.
DUPLICATE_WINDOW_S = 600.0
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 5.0
# What a NATS call can fail with; adapters turn it into Unavailable.
ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


def subject(namespace: str, function: str) -> str:
    return f"{SUBJECT_PREFIX}.{namespace}.{function}"


def stream_config(retention_h: float, max_mb: int) -> api.StreamConfig:
    max_age_s = retention_h * 3600.0
    return api.StreamConfig(
        name=STREAM,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=max_age_s,
        max_bytes=max_mb * 1024 * 1024,
        # JetStream refuses a duplicate window longer than the stream's max age.
        duplicate_window=min(DUPLICATE_WINDOW_S, max_age_s),
        discard=api.DiscardPolicy.OLD,
    )


async def ensure_stream(js: JetStreamContext, retention_h: float, max_mb: int) -> None:
    """Creates or updates the stream; every writer and reader calls it at (re)connect."""
    config = stream_config(retention_h, max_mb)
    try:
        await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


class LogStreamConnection:
    """A lazy connection to NATS with NIMBUS_LOGS made sure of, shared by the stream's writer
    (node-agent) and readers (api): connects on first use, makes the stream again after every
    reconnect (a nats-server with a wiped store comes back without it), and turns every failure
    into Unavailable, so a caller backs off and retries."""

    def __init__(self, url: str, *, name: str, retention_h: float, max_mb: int) -> None:
        self._url = url
        self._name = name
        self._retention_h = retention_h
        self._max_mb = max_mb
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._stream_ok = False
        self._lock = asyncio.Lock()

    async def jetstream(self) -> JetStreamContext:
        async with self._lock:
            try:
                if self._nc is None or self._nc.is_closed:
                    self._stream_ok = False
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        self._nc = await natsconn.connect(
                            self._url,
                            self._name,
                            error_cb=self._on_error,
                            reconnected_cb=self._on_reconnected,
                        )
                    self._js = self._nc.jetstream(timeout=CALL_TIMEOUT_S)
                assert self._js is not None
                if not self._nc.is_connected:
                    raise Unavailable(
                        f"the log stream (NATS at {self._url}) is not connected; retry shortly"
                    )
                if not self._stream_ok:
                    async with asyncio.timeout(CALL_TIMEOUT_S * 2):
                        await ensure_stream(self._js, self._retention_h, self._max_mb)
                    self._stream_ok = True
                return self._js
            except ERRORS as err:
                raise Unavailable(
                    f"the log stream (NATS at {self._url}) is "
                    f"not reachable: {type(err).__name__}: {err}"
                ) from err

    def stream_gone(self) -> None:
        """A call found no stream: make it again before the next one."""
        self._stream_ok = False

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        await natsconn.close(nc, 2)

    async def _on_error(self, err: Exception) -> None:
        log.debug("NATS client error", extra={"fields": {"error": f"{type(err).__name__}: {err}"}})

    async def _on_reconnected(self) -> None:
        self._stream_ok = False
