"""The NATS/JetStream adapter: one connection, the streams, publishes with de-duplication, the
shared pull consumer, dead-letter reads and core subscriptions. Every failure surfaces as
Unavailable.

Streams (file storage, created or updated idempotently at every (re)connect):
  NIMBUS_EVENTS  nimbus.events.<namespace>.<function>; work-queue retention (an acked event is
                 gone); a 10-minute duplicate window over Nats-Msg-Id (idempotency keys, timer ticks
                 published by every replica, replays). Capped in bytes and per function: when
                 full, a new event is refused (discard new, per subject), never an old one
                 dropped, so one function's flood cannot push out another's events.
  NIMBUS_DLQ     nimbus.dlq.<namespace>.<function>; kept NIMBUS_DLQ_MAX_AGE_S, capped in bytes
                 and per function: a function's letters past its cap push out its own oldest.
A durable pull consumer per namespace, `invokers-<namespace>` over nimbus.events.<namespace>.>,
is shared by every invoker replica and made on demand (issue 15.4: one consumer for every tenant
delivered in stream order, so one tenant's backlog delayed the events of all the others). The
invokers find the namespaces that have events from the stream's subject counts
(`namespaces_with_events`); a consumer idle for CONSUMER_IDLE_S is removed by JetStream, and the
events it had not finished stay in the stream for the next one. The single shared consumer of
earlier versions, `invokers`, is deleted at connect: on a work-queue stream its filter would
overlap every namespace's.
The tenants' subject queues (a stream per namespace, a durable push consumer per subject trigger)
are made on demand; their shapes are in nimbus.common.subjects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
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
from nimbus.common import natsconn, subjectqueue, subjects
from nimbus.common.errors import Throttled, Unavailable

log = logging.getLogger(__name__)

EVENTS_STREAM = "NIMBUS_EVENTS"
DLQ_STREAM = "NIMBUS_DLQ"
# The shared consumer of earlier versions (deleted at connect) and the per-namespace ones' prefix.
LEGACY_CONSUMER = "invokers"
CONSUMER_PREFIX = "invokers-"
CONSUMER_IDLE_S = 3600.0
DUPLICATE_WINDOW_S = 600.0
EVENTS_MAX_AGE_S = 7 * 86400.0
MSG_ID = "Nats-Msg-Id"
CALL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class StreamCaps:
    """The bounds of the two streams (EventsConfig has their variables)."""

    events_max_bytes: int = 1024 * 1024 * 1024
    events_per_function: int = 100_000
    dlq_max_bytes: int = 256 * 1024 * 1024
    dlq_per_function: int = 10_000


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
    """Connects in the background and keeps connecting; calls before a connection raise
    Unavailable."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        ack_wait_s: float,
        dlq_max_age_s: float,
        max_ack_pending: int = 20000,
        caps: StreamCaps | None = None,
    ) -> None:
        self._caps = caps or StreamCaps()
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
                log.warning(
                    "NATS not ready, retrying",
                    extra={"fields": {"error": f"{type(err).__name__}: {err}"}},
                )
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
                max_bytes=self._caps.events_max_bytes,
                max_msgs_per_subject=self._caps.events_per_function,
                discard=api.DiscardPolicy.NEW,
                discard_new_per_subject=True,
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
                max_bytes=self._caps.dlq_max_bytes,
                max_msgs_per_subject=self._caps.dlq_per_function,
            ),
        )
        try:
            await js.delete_consumer(EVENTS_STREAM, LEGACY_CONSUMER)
            log.info("the shared events consumer of earlier versions deleted")
        except nats.js.errors.NotFoundError:
            pass

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
        await natsconn.close(nc, 3)

    # -- events ------------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        msg_id: str,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> Stored:
        """Stores one message; returns only once JetStream has it on disk (the publish ack)."""
        js = self._require()
        try:
            ack = await js.publish(
                subject, data, timeout=timeout_s, headers={**headers, MSG_ID: msg_id}
            )
        except nats.js.errors.APIError as err:
            if "maximum" in (err.description or ""):
                # The stream's cap (in all, or this function's): refused, nothing lost.
                raise Throttled(
                    f"the async backlog is full ({err.description}); retry when events have run",
                    retry_after_s=5,
                ) from err
            raise _unavailable(err, "publish") from err
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "publish") from err
        return Stored(seq=int(ack.seq), duplicate=bool(ack.duplicate))

    async def backlog(self, timeout_s: float) -> tuple[int, int]:
        """The events consumers' counts, summed over the namespaces: (not yet delivered,
        delivered and not yet acked)."""
        js = self._require()
        pending = unacked = 0
        try:
            async with asyncio.timeout(timeout_s):
                seen = 0
                while consumers := await js.consumers_info(EVENTS_STREAM, offset=seen):
                    seen += len(consumers)
                    for info in consumers:
                        pending += int(info.num_pending or 0)
                        unacked += int(info.num_ack_pending or 0)
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "consumer info") from err
        return pending, unacked

    async def count_events(self, subject_filter: str) -> int:
        """Events in the stream on subjects matching the filter: with work-queue retention, the
        ones accepted and not yet finished (waiting, running or waiting for a retry)."""
        js = self._require()
        try:
            info = await js.stream_info(EVENTS_STREAM, subjects_filter=subject_filter)
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "stream info") from err
        return sum((info.state.subjects or {}).values())

    async def namespaces_with_events(self) -> set[str]:
        """The namespaces that have events in the stream (waiting, running or waiting for a
        retry): with work-queue retention an event stays until its consumer acks it."""
        js = self._require()
        try:
            info = await js.stream_info(EVENTS_STREAM, subjects_filter="nimbus.events.>")
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "stream info") from err
        out: set[str] = set()
        for subject in info.state.subjects or {}:
            tokens = subject.split(".")
            if len(tokens) >= 4:
                out.add(tokens[2])
        return out

    async def subscribe_events(
        self, namespace: str, on_arrival: Callable[[], None] | None = None
    ) -> EventSubscription:
        """A standing pull on the namespace's events consumer, made first if it is missing."""
        js = self._require()
        name = consumer_name(namespace)
        consumer = api.ConsumerConfig(
            durable_name=name,
            name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait_s,
            max_deliver=-1,
            max_ack_pending=self._max_ack_pending,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=f"nimbus.events.{namespace}.>",
            inactive_threshold=CONSUMER_IDLE_S,
        )
        subscription = EventSubscription(
            self.nc, f"{_JS_API}.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{name}", on_arrival
        )
        try:
            try:
                await js.add_consumer(EVENTS_STREAM, config=consumer)
            except nats.js.errors.BadRequestError as err:
                # An older replica may have made the shared consumer again (it overlaps).
                log.warning("events consumer not made", extra={"fields": {"error": str(err)}})
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    await js.delete_consumer(EVENTS_STREAM, LEGACY_CONSUMER)
                await js.add_consumer(EVENTS_STREAM, config=consumer)
            await subscription.open()
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "subscribe") from err
        return subscription

    async def publish_core(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Plain NATS (at most once), for destinations and replies."""
        try:
            await self.nc.publish(subject, data, headers=headers)
        except (nats.errors.Error, OSError) as err:
            raise _unavailable(err, "publish") from err

    async def subscribe(
        self, subject: str, queue: str, cb: Callable[[Msg], Awaitable[None]]
    ) -> Subscription:
        try:
            return await self.nc.subscribe(subject, queue=queue, cb=cb)
        except (nats.errors.Error, OSError) as err:
            raise _unavailable(err, "subscribe") from err

    # -- tenant subject queues -----------------------------------------------------------------

    async def ensure_subject_queue(self, namespace: str, trigger_id: str, subject: str) -> None:
        """Makes the namespace's stream and the trigger's durable consumer if missing
        (idempotent; an existing consumer is kept as it is: triggers do not change)."""
        js = self._require()
        try:
            await subjectqueue.ensure(js, namespace, trigger_id, subject)
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "subject queue setup") from err

    async def publish_subject(
        self, namespace: str, wire_subject: str, data: bytes, msg_id: str
    ) -> Stored:
        """Stores a message in the namespace's queue, making the queue first if it has none."""
        js = self._require()
        headers = {MSG_ID: msg_id} if msg_id else None
        for attempt in (1, 2):
            try:
                ack = await js.publish(wire_subject, data, timeout=CALL_TIMEOUT_S, headers=headers)
                return Stored(seq=int(ack.seq), duplicate=bool(ack.duplicate))
            except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError) as err:
                # No stream: the namespace has had no subject trigger (or NATS lost its store).
                if attempt == 2:
                    raise _unavailable(err, "publish") from err
                try:
                    await js.add_stream(subjects.stream_config(namespace))
                except nats.js.errors.BadRequestError:
                    pass  # made meanwhile by another replica
                except (TimeoutError, nats.errors.Error, OSError) as err2:
                    raise _unavailable(err2, "subject queue setup") from err2
            except nats.js.errors.APIError as err:
                if "maximum" in (err.description or "").lower():
                    raise Throttled(
                        f"the namespace's subject queue is full ({subjects.MAX_MB} MB of messages"
                        " no trigger has taken yet); retry later"
                    ) from err
                raise _unavailable(err, "publish") from err
            except (TimeoutError, nats.errors.Error, OSError) as err:
                raise _unavailable(err, "publish") from err
        raise AssertionError("unreachable")

    async def delete_subject_queue(self, namespace: str, trigger_id: str) -> None:
        js = self._require()
        try:
            await js.delete_consumer(
                subjects.stream_name(namespace), subjects.consumer_name(trigger_id)
            )
        except nats.js.errors.NotFoundError:
            return
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "subject queue delete") from err

    async def subject_queues(self) -> list[tuple[str, str]]:
        """(namespace, trigger id) of every subject trigger's consumer that exists."""
        js = self._require()
        out: list[tuple[str, str]] = []
        try:
            streams: list[str] = []
            while page := await js.streams_info(offset=len(streams)):
                streams.extend(info.config.name or "" for info in page)
            for name in streams:
                if not name.startswith(subjects.STREAM_PREFIX):
                    continue
                namespace = name[len(subjects.STREAM_PREFIX) :]
                seen = 0
                while consumers := await js.consumers_info(name, offset=seen):
                    seen += len(consumers)
                    for consumer in consumers:
                        trigger_id = subjects.trigger_id_of(consumer.name or "")
                        if trigger_id is not None:
                            out.append((namespace, trigger_id))
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "subject queue list") from err
        return out

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
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "read") from err
        return StoredMessage(
            seq=int(raw.seq or 0),
            subject=raw.subject or subject,
            headers=dict(raw.headers or {}),
            data=raw.data or b"",
        )

    async def _delete_message(self, stream: str, seq: int) -> None:
        js = self._require()
        try:
            await js.delete_msg(stream, seq)
        except nats.js.errors.NotFoundError:
            return
        except (TimeoutError, nats.errors.Error, OSError) as err:
            raise _unavailable(err, "delete") from err


def consumer_name(namespace: str) -> str:
    """The events consumer of one namespace (namespace names are valid consumer-name tokens)."""
    return f"{CONSUMER_PREFIX}{namespace}"


def _ack_fields(reply: str | None) -> tuple[int, int]:
    """(stream sequence, delivery count) from a JetStream ack subject, in either of its forms:
    $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> or, with a domain and
    an account hash, $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>..."""
    tokens = (reply or "").split(".")
    if tokens[:2] != ["$JS", "ACK"]:
        raise ValueError(f"not a JetStream ack subject: {reply!r}")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[4])
    if len(tokens) >= 11:
        return int(tokens[7]), int(tokens[6])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")


class Delivery:
    """One delivery of an event from the shared consumer. Acks never raise: a lost ack means a
    redelivery, which the consumer recognises by the event's finished record."""

    __slots__ = ("_msg", "data", "headers", "seq", "deliveries")

    def __init__(self, msg: Msg) -> None:
        self._msg = msg
        self.data: bytes = msg.data
        self.headers: dict[str, str] = msg.headers or {}
        self.seq, self.deliveries = _ack_fields(msg.reply)

    async def _send(self, what: str, fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except (nats.errors.Error, OSError) as err:
            log.warning(
                "ack not sent",
                extra={
                    "fields": {
                        "kind": what,
                        "seq": self.seq,
                        "error": str(err) or type(err).__name__,
                    }
                },
            )

    async def ack(self) -> None:
        await self._send("ack", self._msg.ack)

    async def nak(self, delay_s: float = 0.0) -> None:
        await self._send("nak", lambda: self._msg.nak(delay=delay_s if delay_s > 0 else None))

    async def in_progress(self) -> None:
        await self._send("in_progress", self._msg.in_progress)

    async def term(self) -> None:
        await self._send("term", self._msg.term)


# A pull request lasts this long at the server; an idle invoker renews it this often.
PULL_EXPIRES_S = 2.0
# Room below a batch waits at most this long for more before it is asked for anyway.
ASK_DELAY_S = 0.02
_JS_API = "$JS.API"
_STATUS = "Status"
_PENDING = "Nats-Pending-Messages"


class EventSubscription:
    """A standing pull on the shared consumer. `pull(room, ...)` hands over what has arrived (at
    most room) and keeps JetStream asked for as many events as the caller has room for, a batch at
    a time: an event costs no request of its own, and nothing arrives that the caller could not
    start at once (the count of asked-for events follows each delivery and each request's end)."""

    def __init__(
        self, nc: NatsClient, next_subject: str, on_arrival: Callable[[], None] | None = None
    ) -> None:
        self._nc = nc
        self._on_arrival = on_arrival
        self._next_subject = next_subject
        self._inbox = ""
        self._sub: Subscription | None = None
        self._ready: deque[Delivery] = deque()
        self._arrived = asyncio.Event()
        # Events asked for and neither delivered nor given up by JetStream, and by when every
        # request made so far has ended for sure (should an end-of-request status be lost).
        self._asked = 0
        self._asked_until = 0.0
        self._short_since: float | None = None
        self._error: Unavailable | None = None

    async def open(self) -> None:
        self._inbox = self._nc.new_inbox()
        self._sub = await self._nc.subscribe(self._inbox, cb=self._on_message)

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get(_STATUS)
        if status is None:
            self._asked = max(0, self._asked - 1)
            try:
                self._ready.append(Delivery(msg))
            except ValueError as err:  # not a JetStream message: nothing to ack it with
                log.warning("undeliverable message dropped", extra={"fields": {"error": str(err)}})
                return
            self._arrived.set()
            if self._on_arrival is not None:
                self._on_arrival()
            return
        if status == "100":
            return  # a heartbeat
        # 404/408: the request ended with this many of its events not delivered; 409: JetStream
        # refused or cut it short (leadership change, limits, the consumer gone).
        pending = headers.get(_PENDING)
        self._asked = max(0, self._asked - int(pending)) if pending and pending.isdigit() else 0
        if status == "409" and "deleted" in headers.get("Description", "").lower():
            self._error = Unavailable("NATS fetch failed: the events consumer was deleted")
            self._arrived.set()
            if self._on_arrival is not None:
                self._on_arrival()

    async def _ask(self, room: int, batch_min: int, busy: bool) -> float | None:
        """Asks for the room not yet asked for, once it reaches batch_min or has waited
        ASK_DELAY_S (at once when the caller has nothing to do); returns how long until a short
        ask is due, if one waits."""
        now = asyncio.get_running_loop().time()
        if self._asked and now > self._asked_until:
            self._asked = 0
        want = room - len(self._ready) - self._asked
        if want <= 0:
            self._short_since = None
            return None
        if want < batch_min and (busy or self._asked or self._ready):
            if self._short_since is None:
                self._short_since = now
            due = self._short_since + ASK_DELAY_S - now
            if due > 0:
                return due
        self._short_since = None
        request = json.dumps({"batch": want, "expires": int(PULL_EXPIRES_S * 1e9)}).encode()
        try:
            await self._nc.publish(self._next_subject, request, reply=self._inbox)
        except (nats.errors.Error, OSError) as err:
            raise _unavailable(err, "fetch") from err
        self._asked += want
        self._asked_until = now + PULL_EXPIRES_S + 1.0
        return None

    async def ask(self, room: int, batch_min: int = 1, busy: bool = False) -> float | None:
        """Keeps JetStream asked for room events in all (held here or on their way), without
        waiting for them; returns how long until a short ask is due, if one waits. Raises
        Unavailable once the consumer is gone."""
        if self._error is not None:
            raise self._error
        return await self._ask(room, batch_min, busy)

    @property
    def held(self) -> list[Delivery]:
        """What has arrived and not been handed over, oldest first."""
        return list(self._ready)

    def take(self) -> Delivery | None:
        """The oldest event that has arrived, if any."""
        return self._ready.popleft() if self._ready else None

    async def pull(
        self, room: int, wait_s: float, batch_min: int = 1, busy: bool = False
    ) -> list[Delivery]:
        """Up to room events: what has arrived, else the first to arrive within wait_s ([] if
        none, or when a short ask falls due first: call again). busy: the caller has events
        running, so a room smaller than batch_min may wait a moment for more."""
        if self._error is not None:
            raise self._error
        due = await self._ask(room, batch_min, busy)
        if not self._ready:
            self._arrived.clear()
            try:
                async with asyncio.timeout(wait_s if due is None else min(wait_s, due)):
                    await self._arrived.wait()
            except TimeoutError:
                return []
            if self._error is not None:
                raise self._error
        out: list[Delivery] = []
        while self._ready and len(out) < room:
            out.append(self._ready.popleft())
        return out

    def take_all(self) -> list[Delivery]:
        """What has arrived and not been handed over (to give back when stopping)."""
        out = list(self._ready)
        self._ready.clear()
        return out

    async def close(self) -> None:
        if self._sub is None:
            return
        try:
            await self._sub.unsubscribe()
        except Exception:
            pass
