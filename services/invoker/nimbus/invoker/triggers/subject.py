"""Subject triggers: each message published on a NATS subject becomes an async event.

Every invoker replica subscribes to a subject trigger's subject in one queue group per trigger,
so NATS hands each message to exactly one replica, which stores it as an event on JetStream (from
then on it is durable). A message that carries a reply subject is answered with
{"invocation_id": ...} once stored, or {"error": ...}. Like any core NATS subscriber, a message
published while no invoker is connected is not seen.

The event is the message's payload when that is JSON; anything else arrives as
{"subject", "body", "isBase64Encoded"} (body is the text, or base64 when it is not UTF-8).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from nimbus.common.errors import NimbusError
from nimbus.common.triggers import TriggerRecord, TriggerType
from nimbus.invoker.events import envelope
from nimbus.invoker.triggers.timer import Enqueuer
from nimbus.invoker.triggers.view import TriggerSource, of_type

log = logging.getLogger(__name__)


class Message(Protocol):
    subject: str
    reply: str
    data: bytes


class Unsubscribable(Protocol):
    async def unsubscribe(self, limit: int = 0) -> None: ...


class Bus(Protocol):
    generation: int

    async def wait_ready(self, timeout_s: float) -> None: ...
    async def subscribe(
        self, subject: str, queue: str, cb: Callable[[Message], Awaitable[None]]
    ) -> Unsubscribable: ...
    async def publish_core(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None: ...


def queue_group(trigger: TriggerRecord) -> str:
    return f"nimbus-trigger-{trigger.trigger_id}"


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
    def __init__(self, triggers: TriggerSource, bus: Bus, submitter: Enqueuer) -> None:
        self._triggers = triggers
        self._bus = bus
        self._submitter = submitter
        # trigger id → (the trigger as subscribed, its subscription)
        self._subs: dict[str, tuple[TriggerRecord, Unsubscribable]] = {}
        self._generation = -1

    async def run(self) -> None:
        """Background task: reconcile subscriptions with the triggers on every change; never
        dies."""
        while True:
            try:
                await self._bus.wait_ready(3600)
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subject trigger reconcile failed")
            with contextlib.suppress(TimeoutError):
                await self._triggers.wait_changed(2.0)

    async def reconcile(self) -> None:
        if self._bus.generation != self._generation:
            # A new connection: the old one's subscriptions went with it.
            self._subs.clear()
            self._generation = self._bus.generation
        desired = {t.trigger_id: t for t in of_type(self._triggers, TriggerType.SUBJECT)}
        for trigger_id, (trigger, sub) in list(self._subs.items()):
            if desired.get(trigger_id) != trigger:
                del self._subs[trigger_id]
                try:
                    await sub.unsubscribe()
                except Exception as err:
                    log.warning(
                        "unsubscribe failed",
                        extra={"fields": {"trigger": trigger_id, "error": str(err)}},
                    )
        for trigger_id, trigger in desired.items():
            if trigger_id in self._subs:
                continue
            sub = await self._bus.subscribe(
                trigger.subject, queue_group(trigger), self._handler(trigger)
            )
            self._subs[trigger_id] = (trigger, sub)

    def _handler(self, trigger: TriggerRecord) -> Callable[[Message], Awaitable[None]]:
        async def on_message(msg: Message) -> None:
            invocation_id = envelope.new_id()
            try:
                await self._submitter.enqueue(
                    trigger.namespace,
                    trigger.function,
                    trigger.qualifier,
                    subject_event(msg.subject, msg.data),
                    invocation_id,
                    invocation_id,
                    "subject",
                )
                reply: dict[str, str] = {"invocation_id": invocation_id}
            except NimbusError as err:
                log.warning(
                    "subject message not stored",
                    extra={"fields": {"trigger": trigger.trigger_id, "error": err.message}},
                )
                reply = {"error": err.message}
            if msg.reply:
                with contextlib.suppress(NimbusError):
                    await self._bus.publish_core(msg.reply, json.dumps(reply).encode())

        return on_message
