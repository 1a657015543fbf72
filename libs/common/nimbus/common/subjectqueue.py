"""Makes a subject trigger's durable queue (its namespace's stream and its consumer, shaped by
nimbus.common.subjects) on JetStream. api makes it before it stores a trigger, so a message
published once the trigger is created is kept; the invokers make it again for every trigger they
watch (after a wiped NATS store, or for triggers stored before queues existed)."""

from __future__ import annotations

import nats.js.errors
from nats.js.client import JetStreamContext
from nimbus.common import subjects


async def ensure(js: JetStreamContext, namespace: str, trigger_id: str, subject: str) -> None:
    """Idempotent; an existing consumer is kept as it is (a trigger never changes). Raises NATS'
    errors; callers turn them into Unavailable."""
    stream = subjects.stream_name(namespace)
    try:
        await js.stream_info(stream)
    except nats.js.errors.NotFoundError:
        try:
            await js.add_stream(subjects.stream_config(namespace))
        except nats.js.errors.BadRequestError:
            await js.stream_info(stream)  # made meanwhile by another replica, or a real error
    consumer = subjects.consumer_name(trigger_id)
    try:
        await js.consumer_info(stream, consumer)
    except nats.js.errors.NotFoundError:
        await js.add_consumer(
            stream, config=subjects.consumer_config(namespace, trigger_id, subject)
        )
