"""The async data path's front half: accept an event (answer once JetStream stored it), read an
invocation's record, list and replay dead letters. The consumer (consumer.py) runs the events.

Accepting: the function (and qualifier) must exist now, else 404 at once. The event is published
with a Nats-Msg-Id, so a repeat of an idempotency key within JetStream's 10-minute duplicate
window is not stored again: the invocation id is derived from (namespace, function, key), so the
repeat answers the first id. The QUEUED record is written after the publish ack, and only if the
event was new; if Redis is down at that moment the event still runs (the consumer writes the
record) and the id is still returned, since the event is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import tracing
from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import InvalidArgument, NotFound, TooLarge, Unavailable
from nimbus.common.model import FunctionRecord
from nimbus.common.triggers import check_qualifier
from nimbus.common.validation import check_name
from nimbus.invoker.events import envelope
from nimbus.invoker.events.backlog import BacklogGate
from nimbus.invoker.events.envelope import DeadLetter
from nimbus.invoker.events.records import EventRef, InvocationRecord, RecordStore
from nimbus.invoker.sync.invoke import FunctionLookup, check_event
from nimbus.invoker.sync.target import resolve

log = logging.getLogger(__name__)

DEFAULT_DLQ_LIMIT = 100
MAX_DLQ_LIMIT = 1000
# A replay of "everything" reads at most this many dead letters in one call.
MAX_REPLAY_SCAN = 10000


class Stored(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def duplicate(self) -> bool: ...


class StoredMessage(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def data(self) -> bytes: ...


class EventLog(Protocol):
    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        msg_id: str,
        timeout_s: float = ...,
    ) -> Stored: ...
    async def next_dead_letter(self, subject: str, from_seq: int) -> StoredMessage | None: ...
    async def delete_dead_letter(self, seq: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    invocation_id: str
    duplicate: bool


class AsyncInvocations:
    def __init__(
        self,
        functions: FunctionLookup,
        log_: EventLog,
        records: RecordStore,
        clock: Clock,
        max_event_bytes: int,
        backlog: BacklogGate | None = None,
    ) -> None:
        self._backlog = backlog
        self._functions = functions
        self._log = log_
        self._records = records
        self._clock = clock
        self._max_event_bytes = max_event_bytes
        # Told the namespace of each event stored (the consumer opens its lane at once).
        self.on_stored: Callable[[str], None] = lambda namespace: None

    async def submit(
        self, who: Principal, name: str, qualifier: str, payload: bytes, idempotency_key: str = ""
    ) -> str:
        check_name(name)
        check_qualifier(qualifier)
        if len(payload) > self._max_event_bytes:
            raise TooLarge(
                f"body: the event is {len(payload)} bytes, over the async limit of"
                f" {self._max_event_bytes}"
            )
        payload = check_event(payload)
        if idempotency_key:
            envelope.check_idempotency_key(idempotency_key)
        record = await self._functions.get(who.namespace, name)
        if record is None:
            raise NotFound(f"function {name!r} not found")
        await self._check_qualifier(record, qualifier)
        if self._backlog is not None:
            await self._backlog.admit(who.namespace)
        if idempotency_key:
            invocation_id = envelope.derived_id("key", who.namespace, name, idempotency_key)
        else:
            invocation_id = envelope.new_id()
        accepted = await self.enqueue(
            who.namespace, name, qualifier, payload, invocation_id, invocation_id, "api"
        )
        return accepted.invocation_id

    async def _check_qualifier(self, record: FunctionRecord, qualifier: str) -> None:
        ns, name = record.namespace, record.name

        def attempt() -> None:
            resolve(
                record,
                qualifier,
                self._functions.version_of(ns, name),
                self._functions.alias_of(ns, name),
                0.0,
            )

        try:
            attempt()
        except NotFound:
            await self._functions.prefetch(ns, name, qualifier)
            attempt()

    async def enqueue(
        self,
        namespace: str,
        name: str,
        qualifier: str,
        payload: bytes,
        invocation_id: str,
        msg_id: str,
        source: str,
        depth: int = 0,
    ) -> Accepted:
        """Stores one event (no checks: callers have made them) and writes its QUEUED record.
        depth: how many destinations led to it (envelope.H_DEPTH)."""
        now = self._clock.now()
        headers = envelope.event_headers(
            invocation_id, namespace, name, qualifier, now, source, depth
        )
        # The consumer continues this trace from the message's traceparent, on every delivery.
        with tracing.span("async.publish", tracing.SpanKind.PRODUCER):
            tracing.inject(headers)
            stored = await self._log.publish(
                envelope.event_subject(namespace, name), payload, headers, msg_id
            )
        self.on_stored(namespace)
        if not stored.duplicate:
            ref = EventRef(invocation_id, namespace, name, qualifier, now, stored.seq)
            try:
                await self._records.create(ref, now)
            except Unavailable as err:
                log.warning(
                    "event stored, record not written",
                    extra={"fields": {"invocation_id": invocation_id, "error": err.message}},
                )
        return Accepted(invocation_id, stored.duplicate)

    async def get(self, who: Principal, invocation_id: str) -> InvocationRecord:
        envelope.check_invocation_id(invocation_id)
        record = await self._records.get(invocation_id)
        # Another namespace's invocation does not exist for this caller.
        if record is None or record.namespace != who.namespace:
            raise NotFound(f"invocation {invocation_id!r} not found (records are kept 24 h)")
        return record

    async def _scan(self, namespace: str, name: str, limit: int) -> list[DeadLetter]:
        subject = envelope.dlq_subject(namespace, name)
        out: list[DeadLetter] = []
        seq = 1
        while len(out) < limit:
            msg = await self._log.next_dead_letter(subject, seq)
            if msg is None:
                break
            seq = msg.seq + 1
            try:
                out.append(DeadLetter.from_json(msg.data, msg.seq))
            except (ValueError, KeyError) as err:
                log.warning(
                    "unreadable dead letter skipped",
                    extra={"fields": {"seq": msg.seq, "error": str(err)}},
                )
        return out

    async def dead_letters(
        self, who: Principal, name: str, limit: int
    ) -> tuple[list[DeadLetter], bool]:
        check_name(name)
        if limit < 0 or limit > MAX_DLQ_LIMIT:
            raise InvalidArgument(
                f"limit: {limit} is out of range; it must be between 0 and {MAX_DLQ_LIMIT}"
            )
        limit = limit or DEFAULT_DLQ_LIMIT
        found = await self._scan(who.namespace, name, limit + 1)
        return found[:limit], len(found) > limit

    async def replay(self, who: Principal, name: str, invocation_ids: list[str]) -> list[str]:
        """Queues dead letters again under their invocation ids, then removes them from the
        dead-letter stream. A replay retried after a crash is de-duplicated (its message id is
        the dead letter's sequence)."""
        check_name(name)
        for invocation_id in invocation_ids:
            envelope.check_invocation_id(invocation_id, "invocation_ids")
        if await self._functions.get(who.namespace, name) is None:
            raise NotFound(f"function {name!r} not found")
        letters = await self._scan(who.namespace, name, MAX_REPLAY_SCAN)
        wanted = set(invocation_ids)
        if wanted:
            letters = [dl for dl in letters if dl.invocation_id in wanted]
            missing = wanted - {dl.invocation_id for dl in letters}
            if missing:
                raise NotFound(
                    f"no dead letter of {name!r} with invocation id {', '.join(sorted(missing))}"
                )
        replayed: list[str] = []
        for letter in letters:
            await self.enqueue(
                who.namespace,
                name,
                letter.qualifier,
                letter.event,
                letter.invocation_id,
                f"replay:{letter.seq}",
                "replay",
            )
            await self._log.delete_dead_letter(letter.seq)
            replayed.append(letter.invocation_id)
        return replayed


def dead_letter_of(
    ref: EventRef, event: bytes, error: bytes, attempts: int, reason: str, now: float
) -> DeadLetter:
    return DeadLetter(
        invocation_id=ref.invocation_id,
        namespace=ref.namespace,
        function=ref.function,
        qualifier=ref.qualifier,
        event=event,
        error=error,
        attempts=attempts,
        created_at=iso(ref.submitted_at),
        failed_at=iso(now),
        reason=reason,
    )
