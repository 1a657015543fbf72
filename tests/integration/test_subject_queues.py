"""The tenants' subject queues against a real nats-server: a stream per namespace, a durable
consumer per subject trigger, messages kept while nobody is subscribed, and nothing crossing
namespaces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from nats.aio.msg import Msg
from nimbus.common import subjects
from nimbus.invoker.stores.jetstream import JetStreamClient

from tests.support.servers import NatsServer

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def js(shared_nats: NatsServer) -> AsyncIterator[JetStreamClient]:
    """A client of the module's own NATS account on the session's server."""
    client = JetStreamClient(shared_nats.account(), name="test", ack_wait_s=3, dlq_max_age_s=3600)
    task = asyncio.create_task(client.run())
    await client.wait_ready(20)
    yield client
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await client.close()


async def drain(js: JetStreamClient, namespace: str, trigger_id: str) -> list[str]:
    """What the trigger's consumer delivers within a moment, acked."""
    got: list[str] = []

    async def on(msg: Msg) -> None:
        got.append(msg.subject)
        await msg.ack()

    sub = await js.subscribe(
        subjects.deliver_subject(namespace, trigger_id), subjects.queue_group(trigger_id), on
    )
    await asyncio.sleep(1.0)
    await sub.unsubscribe()
    return got


async def test_messages_wait_for_their_triggers_and_stay_in_their_namespace(js):
    await js.ensure_subject_queue("team-a", "t1", "orders.*")
    await js.ensure_subject_queue("team-a", "t2", ">")
    await js.ensure_subject_queue("team-a", "t2", ">")  # idempotent
    await js.ensure_subject_queue("team-b", "t3", ">")
    # Published while nobody is subscribed: kept.
    first = await js.publish_subject("team-a", "tenant.team-a.orders.new", b"{}", "")
    await js.publish_subject("team-a", "tenant.team-a.other", b"{}", "")
    # A namespace without any trigger gets its stream on the first publish; nobody keeps it.
    await js.publish_subject("team-c", "tenant.team-c.orders.new", b"{}", "")
    again = await js.publish_subject("team-a", "tenant.team-a.orders.new", b"{}", "k1")
    dup = await js.publish_subject("team-a", "tenant.team-a.orders.new", b"{}", "k1")
    assert dup.duplicate and dup.seq == again.seq and first.seq < again.seq

    assert await drain(js, "team-a", "t1") == ["tenant.team-a.orders.new"] * 2
    assert sorted(await drain(js, "team-a", "t2")) == sorted(
        ["tenant.team-a.orders.new"] * 2 + ["tenant.team-a.other"]
    )
    assert await drain(js, "team-b", "t3") == []
    # Taken by every trigger it matched: gone from the stream (interest retention).
    info = await js.nc.jetstream().stream_info(subjects.stream_name("team-a"))
    assert info.state.messages == 0

    queues = await js.subject_queues()
    assert {("team-a", "t1"), ("team-a", "t2"), ("team-b", "t3")} <= set(queues)
    await js.delete_subject_queue("team-a", "t1")
    await js.delete_subject_queue("team-a", "t1")  # idempotent
    assert ("team-a", "t1") not in await js.subject_queues()
