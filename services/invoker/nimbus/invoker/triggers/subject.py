"""Subject triggers: each message published on a subject of the trigger's namespace becomes an
async event.

The trigger's subject is the user's name; on the wire it is `tenant.<namespace>.<subject>`
(nimbus.common.subjects), so a trigger sees its own namespace's messages and nothing else, however
it uses wildcards. Each namespace's messages are kept in its JetStream stream, and each subject
trigger has a durable consumer there that pushes to every invoker replica in one queue group per
trigger, so each message goes to one replica, which stores it as an event on the events stream and
only then acks it. A message published while no invoker is connected waits in the stream; one whose
event could not be stored is redelivered after a moment. The event's invocation id is derived from
the trigger and the message's place in the stream, so a redelivered message is stored once.

The event is the message's payload when that is JSON; anything else arrives as
{"subject", "body", "isBase64Encoded"} (subject as the user names it; body is the text, or base64
when it is not UTF-8).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from nimbus.common import subjects
from nimbus.common.errors import InvalidArgument, NimbusError, NotFound
from nimbus.common.triggers import TriggerRecord, TriggerType
from nimbus.invoker.events import envelope
from nimbus.invoker.triggers.timer import Enqueuer
from nimbus.invoker.triggers.view import TriggerSource, of_type

log = logging.getLogger(__name__)

# A message whose event could not be stored comes back after about this long.
RETRY_DELAY_S = 1.0
# Consumers of triggers that are gone are deleted once seen gone in two sweeps this far apart
# (a trigger just made may not have reached every replica's watch yet).
SWEEP_EVERY_S = 60.0


class Message(Protocol):
    subject: str
    reply: str
    data: bytes
    headers: dict[str, str] | None

    async def ack(self) -> None: ...
    async def nak(self, delay: float | None = None) -> None: ...


class Unsubscribable(Protocol):
    async def unsubscribe(self, limit: int = 0) -> None: ...


class Bus(Protocol):
    generation: int

    async def wait_ready(self, timeout_s: float) -> None: ...
    async def subscribe(
        self, subject: str, queue: str, cb: Callable[[Message], Awaitable[None]]
    ) -> Unsubscribable: ...
    async def ensure_subject_queue(self, namespace: str, trigger_id: str, subject: str) -> None: ...
    async def delete_subject_queue(self, namespace: str, trigger_id: str) -> None: ...
    async def subject_queues(self) -> list[tuple[str, str]]: ...


def queue_group(trigger: TriggerRecord) -> str:
    return subjects.queue_group(trigger.trigger_id)


def invocation_id_of(trigger_id: str, reply: str) -> str:
    """The invocation id of a message's event for one trigger: the same on every delivery of the
    message (pure; raises ValueError for a message that did not come from JetStream)."""
    seq, ts = subjects.stream_position(reply)
    return envelope.derived_id("subject", trigger_id, str(seq), str(ts))


def subject_event(subject: str, data: bytes) -> bytes:
    """The message as the event (pure)."""
    if data.strip():
        try:
            json.loads(data)
            return data
        except (ValueError, RecursionError):
            pass
    try:
        body, b64 = data.decode("utf-8"), False
    except UnicodeDecodeError:
        body, b64 = base64.b64encode(data).decode(), True
    return json.dumps({"subject": subject, "body": body, "isBase64Encoded": b64}).encode()


class SubjectTriggers:
    def __init__(
        self,
        triggers: TriggerSource,
        bus: Bus,
        submitter: Enqueuer,
        monotonic: Callable[[], float],
    ) -> None:
        self._triggers = triggers
        self._bus = bus
        self._submitter = submitter
        self._monotonic = monotonic
        # trigger id → (the trigger as subscribed, its subscription)
        self._subs: dict[str, tuple[TriggerRecord, Unsubscribable]] = {}
        self._generation = -1
        self._next_sweep = 0.0
        # Consumers without a trigger at the last sweep.
        self._orphans: set[tuple[str, str]] = set()

    async def run(self) -> None:
        """Background task: reconcile subscriptions with the triggers on every change; never
        dies."""
        while True:
            try:
                await self._bus.wait_ready(3600)
                await self.reconcile()
                if self._monotonic() >= self._next_sweep:
                    self._next_sweep = self._monotonic() + SWEEP_EVERY_S
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subject trigger reconcile failed")
            with contextlib.suppress(TimeoutError):
                await self._triggers.wait_changed(2.0)

    async def reconcile(self) -> None:
        if self._bus.generation != self._generation:
            # A new connection: the old one's subscriptions went with it (and the server may have
            # come back without the queues: they are made again below).
            self._subs.clear()
            self._generation = self._bus.generation
        desired = {t.trigger_id: t for t in of_type(self._triggers, TriggerType.SUBJECT)}
        for trigger_id, (trigger, sub) in list(self._subs.items()):
            if desired.get(trigger_id) != trigger:
                del self._subs[trigger_id]
                try:
                    await sub.unsubscribe()
                    # The trigger is gone: so are the messages kept for it.
                    await self._bus.delete_subject_queue(trigger.namespace, trigger_id)
                except Exception as err:
                    log.warning(
                        "unsubscribe failed",
                        extra={"fields": {"trigger": trigger_id, "error": str(err)}},
                    )
        for trigger_id, trigger in desired.items():
            if trigger_id in self._subs:
                continue
            await self._bus.ensure_subject_queue(trigger.namespace, trigger_id, trigger.subject)
            sub = await self._bus.subscribe(
                subjects.deliver_subject(trigger.namespace, trigger_id),
                queue_group(trigger),
                self._handler(trigger),
            )
            self._subs[trigger_id] = (trigger, sub)

    async def sweep(self) -> None:
        """Deletes the consumers of triggers that are gone (deleted while no invoker ran, or with
        their function), once seen gone twice in a row."""
        desired = {
            (t.namespace, t.trigger_id) for t in of_type(self._triggers, TriggerType.SUBJECT)
        }
        orphans = {q for q in await self._bus.subject_queues() if q not in desired}
        for namespace, trigger_id in orphans & self._orphans:
            await self._bus.delete_subject_queue(namespace, trigger_id)
        self._orphans = orphans

    def _handler(self, trigger: TriggerRecord) -> Callable[[Message], Awaitable[None]]:
        async def on_message(msg: Message) -> None:
            try:
                invocation_id = invocation_id_of(trigger.trigger_id, msg.reply)
            except ValueError:
                # Not from the trigger's consumer (someone published on the deliver subject).
                return
            try:
                await self._submitter.enqueue(
                    trigger.namespace,
                    trigger.function,
                    trigger.qualifier,
                    subject_event(subjects.user_subject(trigger.namespace, msg.subject), msg.data),
                    invocation_id,
                    invocation_id,
                    "subject",
                    # A destination's record carries its depth on to the event.
                    depth=envelope.depth_of(msg.headers),
                )
            except (NotFound, InvalidArgument) as err:
                # It can never be stored (the function is going away with its trigger).
                log.warning(
                    "subject message dropped",
                    extra={"fields": {"trigger": trigger.trigger_id, "error": err.message}},
                )
                await _settle(msg.ack())
                return
            except NimbusError as err:
                log.warning(
                    "subject message not stored; it comes again",
                    extra={"fields": {"trigger": trigger.trigger_id, "error": err.message}},
                )
                await _settle(msg.nak(RETRY_DELAY_S))
                return
            await _settle(msg.ack())

        return on_message


async def _settle(ack: Awaitable[None]) -> None:
    """An ack or nak that is lost makes a redelivery after ACK_WAIT_S, which the event's derived
    id makes harmless."""
    try:
        await ack
    except Exception as err:
        log.warning("subject message ack not sent", extra={"fields": {"error": str(err)}})
