"""The events and dead-letter streams are bounded (issue 15.4), against a real nats-server: a
function past its events cap has new events refused (429) while other functions' go on, and a
function past its dead-letter cap loses its own oldest letters, never another's."""

from __future__ import annotations

import asyncio

import pytest
from nimbus.common.errors import Throttled
from nimbus.invoker.events import envelope
from nimbus.invoker.stores.jetstream import JetStreamClient, StreamCaps

pytestmark = pytest.mark.timeout(60)

CAPS = StreamCaps(
    events_max_bytes=64 << 20, events_per_function=3, dlq_max_bytes=64 << 20, dlq_per_function=2
)


async def test_streams_are_capped_per_function(nats_url: str) -> None:
    client = JetStreamClient(nats_url, name="caps", ack_wait_s=3, dlq_max_age_s=3600, caps=CAPS)
    task = asyncio.create_task(client.run())
    try:
        await client.wait_ready(20)
        flood = envelope.event_subject("noisy", "flood")
        for i in range(3):
            await client.publish(flood, b"{}", {}, f"flood-{i}")
        with pytest.raises(Throttled, match="async backlog is full"):
            await client.publish(flood, b"{}", {}, "flood-3")
        # Another function (of another tenant) is not held back by the flood.
        await client.publish(envelope.event_subject("quiet", "fn"), b"{}", {}, "quiet-0")
        assert await client.count_events(envelope.events_filter("quiet")) == 1

        letters = envelope.dlq_subject("noisy", "flood")
        for i in range(5):
            await client.publish(letters, f"{i}".encode(), {}, f"dl-{i}")
        await client.publish(envelope.dlq_subject("quiet", "fn"), b"q", {}, "dl-q")
        kept, seq = [], 0
        while (msg := await client.next_dead_letter(letters, seq + 1)) is not None:
            kept.append(msg.data)
            seq = msg.seq
        assert kept == [b"3", b"4"]  # its own oldest went
        other = await client.next_dead_letter(envelope.dlq_subject("quiet", "fn"), 1)
        assert other is not None and other.data == b"q"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
