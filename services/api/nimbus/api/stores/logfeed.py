"""NATS adapter of metering: the durable pull consumer `meter` on NIMBUS_USAGE (the REPORT records,
nimbus.common.logstream), shared by every api replica. It connects in the background and keeps
connecting; fetch raises Unavailable meanwhile.

While the shared log stream of earlier versions still has REPORTs its `meter` consumer has not
delivered, fetch drains those first; then that consumer is deleted. (The store skips request ids
it has counted, so a REPORT read from both is billed once.)"""

from __future__ import annotations

import asyncio
import logging

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext
from nimbus.common import logstream, natsconn
from nimbus.common.errors import Unavailable

log = logging.getLogger(__name__)

CONSUMER = "meter"
CALL_TIMEOUT_S = 5.0


class LogDelivery:
    """One message of log records. Acks never raise: a lost ack is a redelivery, which the
    meter's store recognises by the request ids it has counted."""

    __slots__ = ("_msg", "data")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.data: bytes = msg.data

    async def ack(self) -> None:
        try:
            await self._msg.ack()
        except (nats.errors.Error, OSError) as err:
            log.warning("ack not sent", extra={"fields": {"error": str(err) or type(err).__name__}})

    async def nak(self, delay_s: float) -> None:
        try:
            await self._msg.nak(delay=delay_s)
        except (nats.errors.Error, OSError) as err:
            log.warning("nak not sent", extra={"fields": {"error": str(err) or type(err).__name__}})


class LogFeed:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        retention_h: float,
        max_mb: int,
        ack_wait_s: float,
        max_ack_pending: int,
    ) -> None:
        self._url = url
        self._name = name
        self._retention_h = retention_h
        self._max_mb = max_mb
        self._ack_wait_s = ack_wait_s
        self._max_ack_pending = max_ack_pending
        self._nc: NatsClient | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._legacy_sub: JetStreamContext.PullSubscription | None = None
        # Set when the stream and consumer must be made again: a reconnect (the server may have
        # come back with a wiped store) or a failed fetch.
        self._stale = asyncio.Event()
        self._bound = asyncio.Event()

    async def run(self) -> None:
        """Background task: connect, make the stream and the consumer, redo that when stale."""
        delay = 0.2
        while True:
            try:
                if self._nc is None or self._nc.is_closed:
                    self._nc = await natsconn.connect(
                        self._url,
                        self._name,
                        error_cb=self._on_error,
                        reconnected_cb=self._on_reconnected,
                    )
                    self._stale.set()
                if self._stale.is_set() and self._nc.is_connected:
                    self._stale.clear()
                    await self._setup(self._nc.jetstream(timeout=CALL_TIMEOUT_S))
                delay = 0.2
                try:
                    async with asyncio.timeout(2):
                        await self._stale.wait()
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as err:
                self._stale.set()
                log.warning(
                    "log stream not ready, retrying",
                    extra={"fields": {"error": f"{type(err).__name__}: {err}"}},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _setup(self, js: JetStreamContext) -> None:
        await logstream.ensure_stream(js, self._retention_h, self._max_mb)
        consumer = api.ConsumerConfig(
            durable_name=CONSUMER,
            name=CONSUMER,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            max_deliver=-1,
            max_ack_pending=self._max_ack_pending,
            # Everything the stream still holds is metered, once.
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=f"{logstream.USAGE_PREFIX}.>",
        )
        try:
            await js.add_consumer(logstream.USAGE_STREAM, config=consumer)
        except nats.js.errors.BadRequestError as err:
            log.warning("meter consumer kept as it is", extra={"fields": {"error": str(err)}})
        if self._sub is None:
            self._sub = await js.pull_subscribe_bind(
                durable=CONSUMER, stream=logstream.USAGE_STREAM
            )
            self._bound.set()
        if self._legacy_sub is None:
            try:
                await js.consumer_info(logstream.LEGACY_STREAM, CONSUMER)
                self._legacy_sub = await js.pull_subscribe_bind(
                    durable=CONSUMER, stream=logstream.LEGACY_STREAM
                )
            except nats.js.errors.NotFoundError:
                pass
        log.info(
            "metering from the usage stream",
            extra={"fields": {"stream": logstream.USAGE_STREAM, "consumer": CONSUMER}},
        )

    async def _fetch_legacy(self, batch: int) -> list[LogDelivery]:
        """The REPORTs the old shared log stream still holds; [] once none is left (its consumer
        is then deleted)."""
        sub = self._legacy_sub
        if sub is None:
            return []
        try:
            msgs = await sub.fetch(batch, timeout=0.2)
        except (TimeoutError, nats.errors.TimeoutError):
            msgs = []
        except (nats.errors.Error, OSError):
            return []
        if msgs:
            return [LogDelivery(m) for m in msgs]
        try:
            info = await sub.consumer_info()
            if not info.num_pending and not info.num_ack_pending:
                assert self._nc is not None
                await self._nc.jetstream(timeout=CALL_TIMEOUT_S).delete_consumer(
                    logstream.LEGACY_STREAM, CONSUMER
                )
                self._legacy_sub = None
                log.info("the old shared log stream's REPORTs are all metered")
        except nats.js.errors.NotFoundError:
            self._legacy_sub = None
        except (TimeoutError, nats.errors.Error, OSError):
            pass
        return []

    async def _on_error(self, err: Exception) -> None:
        log.debug("NATS client error", extra={"fields": {"error": f"{type(err).__name__}: {err}"}})

    async def _on_reconnected(self) -> None:
        self._stale.set()

    async def fetch(self, batch: int, timeout_s: float) -> list[LogDelivery]:
        """Up to batch messages; [] when none came within timeout_s
        (also before the first connect)."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._bound.wait()
        except TimeoutError:
            return []
        sub = self._sub
        if sub is None or self._nc is None or not self._nc.is_connected:
            # The caller backs off; no message is lost while nobody fetches.
            raise Unavailable("the log stream is not connected")
        if self._legacy_sub is not None:
            legacy = await self._fetch_legacy(batch)
            if legacy:
                return legacy
        try:
            msgs = await sub.fetch(batch, timeout=timeout_s)
        except (TimeoutError, nats.errors.TimeoutError):
            return []
        except (nats.errors.Error, OSError) as err:
            self._stale.set()
            raise Unavailable(
                f"fetching from the log stream failed: {type(err).__name__}: {err}"
            ) from err
        return [LogDelivery(m) for m in msgs]

    async def close(self) -> None:
        # No drain: whatever was fetched and not acked is redelivered to another replica anyway.
        nc, self._nc, self._sub = self._nc, None, None
        self._legacy_sub = None
        self._bound.clear()
        if nc is not None and not nc.is_closed:
            try:
                async with asyncio.timeout(3):
                    await nc.close()
            except Exception as err:
                log.warning(
                    "NATS connection did not close cleanly", extra={"fields": {"error": str(err)}}
                )
