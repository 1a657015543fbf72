"""The invoker's multiplexed connection to a real node-agent process (stores/nodestream.py): the
node's invoke lane by default, InvokeStream when the node turns the lane off."""

from __future__ import annotations

import asyncio
import json
import signal

import pytest
from nimbus.common.errors import DeadlineExceeded, NotFound, Unavailable
from nimbus.internal.v1 import nodeagent_pb2
from nimbus.invoker.stores.nodestream import NodeStream

from tests.support import pid_gone, until
from tests.support.nodeagent import ECHO, SLEEPS, create, start_agent

pytestmark = pytest.mark.timeout(60)


LANE_OFF = {"NIMBUS_INVOKE_LANE_ADDR": "off"}


async def _sent(stream: NodeStream) -> bool:
    return stream.in_flight


def call(instance_id: str, event: object, request_id: str) -> nodeagent_pb2.InstanceInvokeRequest:
    return nodeagent_pb2.InstanceInvokeRequest(
        instance_id=instance_id, request_id=request_id, payload=json.dumps(event).encode()
    )


@pytest.mark.parametrize("kind", ["lane", "stream"])
async def test_calls_share_one_connection_and_get_their_own_replies(
    kind, tmp_path, etcd_endpoint, etcd, code_server
) -> None:
    agent = await start_agent(
        tmp_path, etcd_endpoint, code_server[0], **(LANE_OFF if kind == "stream" else {})
    )
    stream = NodeStream(agent.stub, agent.addr)
    try:
        echo = await create(agent, code_server, ECHO)
        sleeper = await create(agent, code_server, SLEEPS, name="sleeper")
        slow = asyncio.create_task(stream.invoke(call(sleeper.instance_id, {"s": 0.5}, "slow"), 10))
        # The slow call does not hold up the others on the same stream.
        fast = await asyncio.wait_for(
            asyncio.gather(
                *(stream.invoke(call(echo.instance_id, {"i": i}, f"r{i}"), 10) for i in range(20))
            ),
            5,
        )
        assert not slow.done()
        assert stream.kind == kind
        assert [json.loads(r.payload) for r in fast] == [{"i": i} for i in range(20)]
        assert json.loads((await slow).payload) == "slept"
        with pytest.raises(NotFound):
            await stream.invoke(call("no-such-instance", {}, "x"), 5)
    finally:
        stream.close()
        await agent.stop()


@pytest.mark.parametrize("kind", ["lane", "stream"])
async def test_a_call_past_its_deadline_fails_and_the_others_go_on(
    kind, tmp_path, etcd_endpoint, etcd, code_server
) -> None:
    agent = await start_agent(
        tmp_path, etcd_endpoint, code_server[0], **(LANE_OFF if kind == "stream" else {})
    )
    stream = NodeStream(agent.stub, agent.addr)
    try:
        first = await create(agent, code_server, SLEEPS, name="sleeper")
        second = await create(agent, code_server, SLEEPS, name="sleeper2")
        long = asyncio.create_task(stream.invoke(call(first.instance_id, {"s": 1.0}, "long"), 10))
        await until(lambda: _sent(stream), 5, "the long call to be sent")
        # A shorter deadline than any before it still fires on time.
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(DeadlineExceeded, match="within 0.3s"):
            await stream.invoke(call(second.instance_id, {"s": 2}, "short"), 0.3)
        assert asyncio.get_running_loop().time() - t0 < 0.9
        assert json.loads((await asyncio.wait_for(long, 5)).payload) == "slept"
        assert not long.cancelled()
        if kind == "lane":
            assert not stream._stream.deadlines  # type: ignore[union-attr]  # nothing kept of finished calls
    finally:
        stream.close()
        await agent.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["lane", "stream"])
async def test_a_dead_node_fails_the_calls_in_flight_at_once(
    kind, tmp_path, etcd_endpoint, etcd, code_server
) -> None:
    node = await start_agent(
        tmp_path, etcd_endpoint, code_server[0], **(LANE_OFF if kind == "stream" else {})
    )
    stream = NodeStream(node.stub, node.addr)
    try:
        echo = await create(node, code_server, ECHO)
        info = await create(node, code_server, SLEEPS, name="sleeper")
        await stream.invoke(call(echo.instance_id, {}, "first"), 10)  # the connection is up
        assert stream.kind == kind
        in_flight = asyncio.create_task(
            stream.invoke(call(info.instance_id, {"s": 30}, "long"), 60)
        )
        await until(lambda: _sent(stream), 5, "the long call to be sent")
        await node.stop(signal.SIGKILL)
        with pytest.raises(Unavailable):
            await asyncio.wait_for(in_flight, 5)
        with pytest.raises(Unavailable):
            await stream.invoke(call(info.instance_id, {}, "after"), 5)
    finally:
        stream.close()


@pytest.mark.slow
async def test_sigterm_lets_the_calls_on_the_lane_finish(
    tmp_path, etcd_endpoint, etcd, code_server
) -> None:
    node = await start_agent(tmp_path, etcd_endpoint, code_server[0])
    stream = NodeStream(node.stub, node.addr)
    try:
        info = await create(node, code_server, SLEEPS, name="sleeper")
        in_flight = asyncio.create_task(
            stream.invoke(call(info.instance_id, {"s": 1.5}, "long"), 30)
        )
        await until(lambda: _sent(stream), 5, "the call to be sent")
        assert stream.kind == "lane"
        node.proc.send_signal(signal.SIGTERM)
        reply = await asyncio.wait_for(in_flight, 15)
        assert json.loads(reply.payload) == "slept"
        assert await node.stop() == 0, node.log()
    finally:
        stream.close()


@pytest.mark.slow
async def test_an_invoker_going_away_cancels_its_calls_on_the_lane(
    tmp_path, etcd_endpoint, etcd, code_server
) -> None:
    """As a broken InvokeStream or a cancelled unary call does: the instance that ran the call is
    stopped (it would answer nobody), and the node keeps serving others."""
    node = await start_agent(tmp_path, etcd_endpoint, code_server[0])
    first, second = NodeStream(node.stub, node.addr), NodeStream(node.stub, node.addr)
    try:
        sleeper = await create(node, code_server, SLEEPS, name="sleeper")
        echo = await create(node, code_server, ECHO)
        pid = node.instance_pid(sleeper.instance_id)
        abandoned = asyncio.create_task(
            first.invoke(call(sleeper.instance_id, {"s": 30}, "abandoned"), 60)
        )
        await until(lambda: _sent(first), 5, "the call to be sent")
        first.close()
        with pytest.raises(Unavailable):
            await asyncio.wait_for(abandoned, 5)
        await until(
            lambda: asyncio.sleep(0, pid_gone(pid)), 10, "the abandoned call's instance to stop"
        )
        reply = await second.invoke(call(echo.instance_id, {"still": "here"}, "other"), 10)
        assert json.loads(reply.payload) == {"still": "here"}
    finally:
        first.close()
        second.close()
        await node.stop()
