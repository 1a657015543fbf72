"""NATS adapter of the log queries: ephemeral pull consumers on the namespace's log stream
(nimbus.common.logstream), and first on the shared stream of earlier versions while it exists.

Each query or tail makes its own consumer (memory storage, no acks, filtered on the function's
subject, removed by the server INACTIVE_S after its reader stops), starting at a time. Connecting
is lazy and bounded; every call has a deadline; any NATS failure is Unavailable (503).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext
from nimbus.api.logs import StoredBatch
from nimbus.common import logstream
from nimbus.common.errors import Unavailable
from nimbus.common.logstream import CALL_TIMEOUT_S, ERRORS, LogStreamConnection

FETCH_BATCH = 256
# How long a tail's fetch waits for new messages before it yields None to its caller.
FOLLOW_WAIT_S = 1.0
INACTIVE_S = 30.0


def _unavailable(err: BaseException, what: str) -> Unavailable:
    return Unavailable(
        f"the log store (NATS) failed to {what}: {type(err).__name__}: {err}".rstrip(": ")
    )


class JetStreamLogStore:
    def __init__(self, url: str, *, name: str, retention_h: float, max_mb: int) -> None:
        self._conn = LogStreamConnection(url, name=name, retention_h=retention_h, max_mb=max_mb)
        # Whether the shared stream of earlier versions exists, and when that was read.
        self._legacy: tuple[bool, float] | None = None

    async def read(self, subject: str, since: float) -> AsyncIterator[StoredBatch]:
        streams = [logstream.stream_name(logstream.namespace_of(subject))]
        if await self._legacy_exists():
            # Its lines are all older than the namespace stream's.
            streams.insert(0, logstream.LEGACY_STREAM)
        for stream in streams:
            sub = await self._consumer(subject, since, stream)
            try:
                try:
                    async with asyncio.timeout(CALL_TIMEOUT_S):
                        # None only from a server too old for this client; then nothing is read.
                        pending = (await sub.consumer_info()).num_pending or 0
                except ERRORS as err:
                    raise _unavailable(err, "read") from err
                while pending > 0:
                    msgs = await self._fetch(sub, CALL_TIMEOUT_S)
                    if not msgs:
                        raise Unavailable("the log store (NATS) stopped answering mid-read")
                    for msg in msgs:
                        yield StoredBatch(msg.metadata.timestamp.timestamp(), msg.data)
                    pending = msgs[-1].metadata.num_pending
            finally:
                await self._drop(sub, stream)

    async def _legacy_exists(self) -> bool:
        """Whether the shared stream of earlier versions is still there (checked once a minute)."""
        now = time.monotonic()
        if self._legacy is None or now - self._legacy[1] > 60.0:
            js = await self._conn.jetstream()
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    await js.stream_info(logstream.LEGACY_STREAM)
                exists = True
            except nats.js.errors.NotFoundError:
                exists = False
            except ERRORS as err:
                raise _unavailable(err, "read") from err
            self._legacy = (exists, now)
        return self._legacy[0]

    async def follow(self, subject: str, since: float | None) -> AsyncIterator[StoredBatch | None]:
        stream = logstream.stream_name(logstream.namespace_of(subject))
        sub = await self._consumer(subject, since, stream)
        try:
            while True:
                msgs = await self._fetch(sub, FOLLOW_WAIT_S)
                for msg in msgs:
                    yield StoredBatch(msg.metadata.timestamp.timestamp(), msg.data)
                if not msgs:
                    yield None
        finally:
            await self._drop(sub, stream)

    async def close(self) -> None:
        await self._conn.close()

    # -- internals ---------------------------------------------------------------------------------

    async def _fetch(self, sub: JetStreamContext.PullSubscription, wait_s: float) -> list[Msg]:
        try:
            return await sub.fetch(FETCH_BATCH, timeout=wait_s)
        except (nats.errors.TimeoutError, TimeoutError):
            return []
        except ERRORS as err:
            raise _unavailable(err, "read") from err

    async def _consumer(
        self, subject: str, since: float | None, stream: str
    ) -> JetStreamContext.PullSubscription:
        js = await self._conn.jetstream()
        config = api.ConsumerConfig(
            ack_policy=api.AckPolicy.NONE,
            inactive_threshold=INACTIVE_S,
            mem_storage=True,
            num_replicas=1,
            max_deliver=1,
        )
        if since is None:
            config.deliver_policy = api.DeliverPolicy.NEW
        else:
            config.deliver_policy = api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = datetime.fromtimestamp(since, UTC)
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    return await js.pull_subscribe(subject, stream=stream, config=config)
            except nats.js.errors.NotFoundError:
                if attempt == 2 or stream == logstream.LEGACY_STREAM:
                    self._legacy = None
                    self._conn.stream_gone()
                    raise Unavailable("the log stream is being set up; retry shortly") from None
                # The namespace has shipped no line yet (or NATS was wiped): an empty stream.
                try:
                    retention_h, max_mb = self._conn.retention
                    async with asyncio.timeout(CALL_TIMEOUT_S):
                        await logstream.ensure_namespace_stream(
                            js, logstream.namespace_of(subject), retention_h, max_mb
                        )
                except ERRORS as err:
                    raise _unavailable(err, "open a reader") from err
            except ERRORS as err:
                raise _unavailable(err, "open a reader") from err
        raise AssertionError("unreachable")

    async def _drop(self, sub: JetStreamContext.PullSubscription, stream: str) -> None:
        """Deletes the consumer now rather than after INACTIVE_S; failures are harmless."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                info = await sub.consumer_info()
                await sub.unsubscribe()
                js = await self._conn.jetstream()
                await js.delete_consumer(stream, info.name)
