"""The public publish route's core: a tenant's producer puts a message on a subject of its own
namespace (POST /v1/subjects/{subject}:publish), where that namespace's subject triggers take it.

The subject is the caller's name (no wildcards); the key's namespace places it on the wire
(nimbus.common.subjects), so a key reaches its own namespace's subjects and nothing else. The
answer comes once JetStream stored the message in the namespace's queue (or found that no subject
trigger wants it, as a topic with no subscriber drops it). With x-nimbus-idempotency-key, a repeat
within the queue's duplicate window is not stored again.
"""

from __future__ import annotations

from typing import Protocol

from nimbus.common import subjects
from nimbus.common.auth import Principal
from nimbus.common.errors import TooLarge
from nimbus.common.triggers import check_subject
from nimbus.invoker.events import envelope
from nimbus.invoker.events.invocations import Stored


class SubjectQueue(Protocol):
    async def publish_subject(
        self, namespace: str, wire_subject: str, data: bytes, msg_id: str
    ) -> Stored: ...


class SubjectPublisher:
    def __init__(self, queue: SubjectQueue, max_bytes: int) -> None:
        self._queue = queue
        self._max_bytes = max_bytes

    async def publish(
        self, who: Principal, subject: str, data: bytes, idempotency_key: str = ""
    ) -> Stored:
        check_subject(subject, wildcards=False)
        if len(data) > self._max_bytes:
            raise TooLarge(
                f"body: the message is {len(data)} bytes, over the limit of {self._max_bytes}"
            )
        msg_id = ""
        if idempotency_key:
            envelope.check_idempotency_key(idempotency_key)
            msg_id = envelope.derived_id("publish", who.namespace, subject, idempotency_key)
        return await self._queue.publish_subject(
            who.namespace, subjects.wire_subject(who.namespace, subject), data, msg_id
        )
