"""NATS adapter of the log queries: ephemeral pull consumers on NIMBUS_LOGS
(nimbus.common.logstream).

Each query or tail makes its own consumer (memory storage, no acks, filtered on the function's
subject, removed by the server INACTIVE_S after its reader stops), starting at a time. Connecting
is lazy and bounded; every call has a deadline; any NATS failure is Unavailable (503).
"""

from __future__ import annotations

import asyncio
import contextlib
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

    async def read(self, subject: str, since: float) -> AsyncIterator[StoredBatch]:
        sub = await self._consumer(subject, since)
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
            await self._drop(sub)

    async def follow(self, subject: str, since: float | None) -> AsyncIterator[StoredBatch | None]:
        sub = await self._consumer(subject, since)
        try:
            while True:
                msgs = await self._fetch(sub, FOLLOW_WAIT_S)
                for msg in msgs:
                    yield StoredBatch(msg.metadata.timestamp.timestamp(), msg.data)
                if not msgs:
                    yield None
        finally:
            await self._drop(sub)

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
        self, subject: str, since: float | None
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
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await js.pull_subscribe(subject, stream=logstream.STREAM, config=config)
        except nats.js.errors.NotFoundError:
            # The stream went (a wiped NATS): make it again at the next call.
            self._conn.stream_gone()
            raise Unavailable("the log stream is being set up; retry shortly") from None
        except ERRORS as err:
            raise _unavailable(err, "open a reader") from err

    async def _drop(self, sub: JetStreamContext.PullSubscription) -> None:
        """Deletes the consumer now rather than after INACTIVE_S; failures are harmless."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                info = await sub.consumer_info()
                await sub.unsubscribe()
                js = await self._conn.jetstream()
                await js.delete_consumer(logstream.STREAM, info.name)
