"""The function-log streams on JetStream, shared by their writer (node-agent) and readers (api).

NIMBUS_LOGS_<namespace> holds subjects `logs.<namespace>.<function>`; both names are valid subject
tokens (namespace and function names match [A-Za-z][A-Za-z0-9_-]*). A message body is JSON lines,
one record per line, many records of one function per message, so a busy node publishes a message
per function per flush instead of one per line:

    {"ts": "2026-11-27T01:02:03.456Z", "namespace", "function", "version", "request_id",
     "stream": "stdout"|"stderr"|"platform", "message", "instance_id"}

The REPORT record of each call also carries a structured "report" object, so no consumer parses
text: {"duration_ms", "billed_ms", "memory_mb", "max_memory_used_mb", "cold_start",
"init_duration_ms", "error"}. The shipper also sends each REPORT record to NIMBUS_USAGE
(`nimbus.usage.<namespace>.<function>`, same format), which the meter reads.
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

# Each namespace's lines are a stream of their own, with its own byte budget (issue 15.4: in one
# shared stream with discard-old, one tenant's output evicted every tenant's lines in seconds): a
# namespace that prints too much loses its own oldest lines, never another's. The node-agent makes
# a namespace's stream when it first ships a line of it.
STREAM_PREFIX = "NIMBUS_LOGS_"
SUBJECT_PREFIX = "logs"
# The REPORT records again, for metering, in a stream no log budget touches: work-queue retention
# (a record goes once the meter acked it) and discard-new (when full, the shipper waits and keeps
# its files: a record is never dropped before it is counted).
USAGE_STREAM = "NIMBUS_USAGE"
USAGE_PREFIX = "nimbus.usage"
USAGE_MAX_MB = 1024
# The one shared stream of earlier versions. At connect its subjects are moved out of `logs.>`
# (JetStream refuses overlapping streams), so nothing new comes in; its lines stay readable until
# they age out, and the meter counts the REPORTs it still holds.
LEGACY_STREAM = "NIMBUS_LOGS"
LEGACY_SUBJECT = "nimbus.legacy-logs"
# Writers publish with Nats-Msg-Id; a node-agent that restarts within this window re-sends a batch
# without duplicating it.
DUPLICATE_WINDOW_S = 600.0
CONNECT_TIMEOUT_S = 5.0
CALL_TIMEOUT_S = 5.0
# What a NATS call can fail with; adapters turn it into Unavailable.
ERRORS = (nats.errors.Error, nats.js.errors.Error, TimeoutError, OSError)


def subject(namespace: str, function: str) -> str:
    return f"{SUBJECT_PREFIX}.{namespace}.{function}"


def namespace_of(log_subject: str) -> str:
    """The namespace of a `logs.<namespace>.<function>` subject."""
    return log_subject.split(".")[1]


def stream_name(namespace: str) -> str:
    return f"{STREAM_PREFIX}{namespace}"


def usage_subject(namespace: str, function: str) -> str:
    return f"{USAGE_PREFIX}.{namespace}.{function}"


def stream_config(namespace: str, retention_h: float, max_mb: int) -> api.StreamConfig:
    """One namespace's log stream: max_mb is that namespace's budget."""
    max_age_s = retention_h * 3600.0
    return api.StreamConfig(
        name=stream_name(namespace),
        subjects=[f"{SUBJECT_PREFIX}.{namespace}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=max_age_s,
        max_bytes=max_mb * 1024 * 1024,
        # JetStream refuses a duplicate window longer than the stream's max age.
        duplicate_window=min(DUPLICATE_WINDOW_S, max_age_s),
        discard=api.DiscardPolicy.OLD,
    )


def usage_config() -> api.StreamConfig:
    return api.StreamConfig(
        name=USAGE_STREAM,
        subjects=[f"{USAGE_PREFIX}.>"],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        max_bytes=USAGE_MAX_MB * 1024 * 1024,
        duplicate_window=DUPLICATE_WINDOW_S,
        discard=api.DiscardPolicy.NEW,
    )


async def _upsert(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.stream_info(config.name or "")
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)  # made meanwhile by another process
        return
    await js.update_stream(config)


async def retire_legacy(js: JetStreamContext) -> bool:
    """Moves the shared stream of earlier versions off `logs.>`; True if it exists."""
    try:
        info = await js.stream_info(LEGACY_STREAM)
    except nats.js.errors.NotFoundError:
        return False
    if info.config.subjects != [LEGACY_SUBJECT]:
        info.config.subjects = [LEGACY_SUBJECT]
        await js.update_stream(info.config)
        log.info("the shared log stream of earlier versions no longer takes new lines")
    return True


async def ensure_stream(js: JetStreamContext, retention_h: float, max_mb: int) -> None:
    """At every (re)connect of a writer or reader: the usage stream, and the shared stream of
    earlier versions retired. (retention_h and max_mb are the namespaces' streams'.)"""
    await retire_legacy(js)
    await _upsert(js, usage_config())


async def ensure_namespace_stream(
    js: JetStreamContext, namespace: str, retention_h: float, max_mb: int
) -> None:
    """Creates or updates one namespace's log stream (the writer, before its first line)."""
    await _upsert(js, stream_config(namespace, retention_h, max_mb))


class LogStreamConnection:
    """A lazy connection to NATS with NIMBUS_USAGE made sure of (and the old shared log stream
    retired), shared by the log streams' writer (node-agent) and readers (api): connects on first
    use, does that again after every reconnect (a nats-server with a wiped store comes back without
    the streams), and turns every failure into Unavailable, so a caller backs off and retries."""

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

    @property
    def retention(self) -> tuple[float, int]:
        """(hours, MB): what each namespace's stream keeps."""
        return self._retention_h, self._max_mb

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
