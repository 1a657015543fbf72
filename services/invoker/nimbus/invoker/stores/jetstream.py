"""The NATS/JetStream adapter: one connection, the streams, publishes with de-duplication, the shared
pull consumer, dead-letter reads and core subscriptions. Every failure surfaces as Unavailable.

Streams (file storage, created or updated idempotently at every (re)connect):
  NIMBUS_EVENTS  nimbus.events.<namespace>.<function>; work-queue retention (an acked event is
                 gone); a 10-minute duplicate window over Nats-Msg-Id (idempotency keys, timer ticks
                 published by every replica, replays).
  NIMBUS_DLQ     nimbus.dlq.<namespace>.<function>; kept NIMBUS_DLQ_MAX_AGE_S.
One durable pull consumer, `invokers`, on NIMBUS_EVENTS is shared by every invoker replica.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.client import JetStreamContext

from nimbus.common import natsconn
from nimbus.common.errors import Unavailable

log = logging.getLogger(__name__)

EVENTS_STREAM = "NIMBUS_EVENTS"
DLQ_STREAM = "NIMBUS_DLQ"
CONSUMER = "invokers"
DUPLICATE_WINDOW_S = 600.0
EVENTS_MAX_AGE_S = 7 * 86400.0
MSG_ID = "Nats-Msg-Id"
CALL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Stored:
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    subject: str
    headers: dict[str, str]
    data: bytes


def _unavailable(err: BaseException, what: str) -> Unavailable:
    return Unavailable(f"NATS {what} failed: {type(err).__name__}: {err}".rstrip(": "))


class JetStreamClient:
    """Connects in the background and keeps connecting; calls before a connection raise Unavailable."""

    def __init__(self, url: str, *, name: str, ack_wait_s: float, dlq_max_age_s: float, max_ack_pending: int = 20000) -> None:
        self._url = url
        self._name = name
        self._ack_wait_s = ack_wait_s
        self._dlq_max_age_s = dlq_max_age_s
        self._max_ack_pending = max_ack_pending
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._ready = asyncio.Event()
        self._reconnected = asyncio.Event()
        # Bumped on every fresh connection: holders of subscriptions make them again.
        self.generation = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Background task: connect (retrying forever), set up the streams, redo that after a
        reconnect (a nats-server with a wiped store comes back without them). Never raises."""
        delay = 0.2
        streams_ok = False
        while True:
            try:
                if self._nc is None or self._nc.is_closed:
                    self._ready.clear()
                    streams_ok = False
                    # Waits (reconnecting inside nats-py) until a server answers.
                    self._nc = await natsconn.connect(
                        self._url,
                        self._name,
                        error_cb=self._on_error,
                        disconnected_cb=self._on_disconnected,
                        reconnected_cb=self._on_reconnected,
                    )
                    self._js = self._nc.jetstream(timeout=CALL_TIMEOUT_S)
                    self.generation += 1
                    log.info("connected to NATS", extra={"fields": {"url": self._url}})
                if not streams_ok and self._nc.is_connected:
                    await self._ensure_streams()
                    streams_ok = True
                    self._ready.set()
                delay = 0.2
                try:
                    async with asyncio.timeout(2):
                        await self._reconnected.wait()
                except TimeoutError:
                    continue
                self._reconnected.clear()
                streams_ok = False
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("NATS not ready, retrying", extra={"fields": {"error": f"{type(err).__name__}: {err}"}})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _on_error(self, err: Exception) -> None:
        log.debug("NATS client error", extra={"fields": {"error": f"{type(err).__name__}: {err}"}})

    async def _on_disconnected(self) -> None:
        self._ready.clear()
        log.warning("NATS disconnected; reconnecting")

    async def _on_reconnected(self) -> None:
        log.info("NATS reconnected")
        self._reconnected.set()

    async def _ensure_streams(self) -> None:
        js = self._require()
        await self._upsert_stream(
            js,
            api.StreamConfig(
                name=EVENTS_STREAM,
                subjects=["nimbus.events.>"],
                retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE,
                duplicate_window=DUPLICATE_WINDOW_S,
                max_age=EVENTS_MAX_AGE_S,
            ),
        )
        await self._upsert_stream(
            js,
            api.StreamConfig(
                name=DLQ_STREAM,
                subjects=["nimbus.dlq.>"],
                retention=api.RetentionPolicy.LIMITS,
                storage=api.StorageType.FILE,
                # JetStream refuses a duplicate window longer than the stream's max age.
                duplicate_window=min(DUPLICATE_WINDOW_S, self._dlq_max_age_s),
                max_age=self._dlq_max_age_s,
            ),
        )
        consumer = api.ConsumerConfig(
            durable_name=CONSUMER,
            name=CONSUMER,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            max_deliver=-1,
            max_ack_pending=self._max_ack_pending,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject="nimbus.events.>",
        )
        try:
            await js.add_consumer(EVENTS_STREAM, config=consumer)
        except nats.js.errors.BadRequestError as err:
            # An existing consumer whose settings may not change in place keeps them.
            log.warning("shared consumer kept as it is", extra={"fields": {"error": str(err)}})

    @staticmethod
    async def _upsert_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
        try:
            await js.stream_info(config.name or "")
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)
            return
        await js.update_stream(config)

    async def wait_ready(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self._ready.wait()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._nc is not None and self._nc.is_connected

    def _require(self) -> JetStreamContext:
        if self._js is None or self._nc is None or self._nc.is_closed:
            raise Unavailable("NATS is not connected yet; retry shortly")
        return self._js

    @property
    def nc(self) -> NatsClient:
        if self._nc is None or self._nc.is_closed:
            raise Unavailable("NATS is not connected yet; retry shortly")
        return self._nc

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            try:
                async with asyncio.timeout(3):
                    await nc.drain()
            except Exception:
                await nc.close()

    # -- events ------------------------------------------------------------------------------

    async def publish(self, subject: str, data: bytes, headers: dict[str, str], msg_id: str,
                      timeout_s: float = CALL_TIMEOUT_S) -> Stored:
        """Stores one message; returns only once JetStream has it on disk (the publish ack)."""
        js = self._require()
        try:
            ack = await js.publish(subject, data, timeout=timeout_s, headers={**headers, MSG_ID: msg_id})
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as err:
            raise _unavailable(err, "publish") from err
        return Stored(seq=int(ack.seq), duplicate=bool(ack.duplicate))

    async def backlog(self, timeout_s: float) -> tuple[int, int]:
        """The events consumer's counts: (not yet delivered, delivered and not yet acked)."""
        js = self._require()
        try:
            info = await js.consumer_info(EVENTS_STREAM, CONSUMER, timeout=timeout_s)
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as err:
            raise _unavailable(err, "consumer info") from err
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)

    async def subscribe_events(self) -> EventSubscription:
        js = self._require()
        try:
            return EventSubscription(await js.pull_subscribe_bind(durable=CONSUMER, stream=EVENTS_STREAM))
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as err:
            raise _unavailable(err, "subscribe") from err

    async def publish_core(self, subject: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        """Plain NATS (at most once), for destinations and replies."""
        try:
            await self.nc.publish(subject, data, headers=headers)
        except (nats.errors.Error, OSError) as err:
            raise _unavailable(err, "publish") from err

    async def subscribe(self, subject: str, queue: str, cb: Callable[[Msg], Awaitable[None]]) -> Subscription:
        try:
            return await self.nc.subscribe(subject, queue=queue, cb=cb)
        except (nats.errors.Error, OSError) as err:
            raise _unavailable(err, "subscribe") from err

    # -- dead letters ------------------------------------------------------------------------

    async def next_dead_letter(self, subject: str, from_seq: int) -> StoredMessage | None:
        return await self._next_message(DLQ_STREAM, subject, from_seq)

    async def delete_dead_letter(self, seq: int) -> None:
        await self._delete_message(DLQ_STREAM, seq)

    async def _next_message(self, stream: str, subject: str, from_seq: int) -> StoredMessage | None:
        """The first message on subject at or after from_seq, or None."""
        js = self._require()
        try:
            raw = await js.get_msg(stream, seq=max(from_seq, 1), subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as err:
            raise _unavailable(err, "read") from err
        return StoredMessage(
            seq=int(raw.seq or 0), subject=raw.subject or subject, headers=dict(raw.headers or {}), data=raw.data or b""
        )

    async def _delete_message(self, stream: str, seq: int) -> None:
        js = self._require()
        try:
            await js.delete_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            return
        except (nats.errors.Error, asyncio.TimeoutError, OSError) as err:
            raise _unavailable(err, "delete") from err


class Delivery:
    """One delivery of an event from the shared consumer. Acks never raise: a lost ack means a
    redelivery, which the consumer recognises by the event's finished record."""

    __slots__ = ("_msg", "data", "headers", "seq", "deliveries")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.data: bytes = msg.data
        self.headers: dict[str, str] = dict(msg.headers or {})
        meta = msg.metadata
        self.seq: int = int(meta.sequence.stream)
        self.deliveries: int = int(meta.num_delivered)

    async def _send(self, what: str, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except (nats.errors.Error, OSError) as err:
            log.warning("ack not sent", extra={"fields": {"kind": what, "seq": self.seq, "error": str(err) or type(err).__name__}})

    async def ack(self) -> None:
        await self._send("ack", self._msg.ack)

    async def nak(self, delay_s: float = 0.0) -> None:
        await self._send("nak", lambda: self._msg.nak(delay=delay_s if delay_s > 0 else None))

    async def in_progress(self) -> None:
        await self._send("in_progress", self._msg.in_progress)

    async def term(self) -> None:
        await self._send("term", self._msg.term)


class EventSubscription:
    def __init__(self, sub: JetStreamContext.PullSubscription) -> None:
        self._sub = sub

    async def fetch(self, batch: int, timeout_s: float) -> list[Delivery]:
        """Up to batch events; [] when none came within timeout_s. A batch of one returns as soon
        as an event arrives; a larger batch collects for up to timeout_s, so callers keep it short
        and long-poll with a batch of one."""
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout_s)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            return []
        except (nats.errors.Error, OSError) as err:
            raise _unavailable(err, "fetch") from err
        out = []
        for msg in msgs:
            try:
                out.append(Delivery(msg))
            except Exception as err:  # not a JetStream message (no ack subject): nothing to do with it
                log.warning("undeliverable message dropped", extra={"fields": {"error": str(err)}})
        return out

    async def close(self) -> None:
        try:
            await self._sub.unsubscribe()
        except Exception:
            pass
