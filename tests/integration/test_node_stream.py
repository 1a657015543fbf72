"""The invoker's multiplexed InvokeStream to a real node-agent process (stores/nodestream.py)."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest

from nimbus.common.errors import NotFound, Unavailable
from nimbus.internal.v1 import nodeagent_pb2
from nimbus.invoker.stores.nodestream import NodeStream
from test_nodeagent_support import (  # noqa: F401  (fixtures are used by name)
    ECHO,
    SLEEPS,
    CodeServer,
    agent,
    code_server,
    create,
    etcd,
    etcd_endpoint,
    start_agent,
    wait_until,
)

pytestmark = pytest.mark.timeout(60)


async def _sent(stream: NodeStream) -> bool:
    """The stream has the call in flight: sent, its reply awaited (white-box, to order the kill)."""
    open_stream = stream._stream  # noqa: SLF001
    return open_stream is not None and bool(open_stream.pending) and not open_stream.writing and not open_stream.outbox


def call(instance_id: str, event: object, request_id: str) -> nodeagent_pb2.InstanceInvokeRequest:
    return nodeagent_pb2.InstanceInvokeRequest(instance_id=instance_id, request_id=request_id, payload=json.dumps(event).encode())


async def test_calls_share_one_stream_and_get_their_own_replies(agent, code_server) -> None:
    echo = await create(agent, code_server, ECHO)
    sleeper = await create(agent, code_server, SLEEPS, name="sleeper")
    stream = NodeStream(agent.stub, agent.addr)
    try:
        slow = asyncio.create_task(stream.invoke(call(sleeper.instance_id, {"s": 0.5}, "slow"), 10))
        # The slow call does not hold up the others on the same stream.
        fast = await asyncio.wait_for(
            asyncio.gather(*(stream.invoke(call(echo.instance_id, {"i": i}, f"r{i}"), 10) for i in range(20))), 5
        )
        assert not slow.done()
        assert [json.loads(r.payload) for r in fast] == [{"i": i} for i in range(20)]
        assert json.loads((await slow).payload) == "slept"
        with pytest.raises(NotFound):
            await stream.invoke(call("no-such-instance", {}, "x"), 5)
    finally:
        stream.close()


async def test_a_dead_node_fails_the_calls_in_flight_at_once(tmp_path, etcd_endpoint, etcd, code_server) -> None:
    node = await start_agent(tmp_path, etcd_endpoint, code_server[0])
    stream = NodeStream(node.stub, node.addr)
    try:
        echo = await create(node, code_server, ECHO)
        info = await create(node, code_server, SLEEPS, name="sleeper")
        await stream.invoke(call(echo.instance_id, {}, "first"), 10)  # the stream is up
        in_flight = asyncio.create_task(stream.invoke(call(info.instance_id, {"s": 30}, "long"), 60))
        await wait_until(lambda: _sent(stream), 5, "the long call to be sent")
        await node.stop(signal.SIGKILL)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(in_flight, 5)
        with pytest.raises(Unavailable):
            await stream.invoke(call(info.instance_id, {}, "after"), 5)
    finally:
        stream.close()
