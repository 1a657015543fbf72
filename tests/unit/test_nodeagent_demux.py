"""Several calls in flight on one shim connection: each reply reaches the call that names its
request_id, in any order and however the bytes are split; failures end every call in flight."""

from __future__ import annotations

import asyncio

import pytest
from nimbus.nodeagent.protocol import Kind, ProtocolError, encode
from nimbus.nodeagent.shim import CallAborted, InitError, ShimConnection, _Demux

pytestmark = pytest.mark.timeout(10)


class FakeTransport:
    """Records what the agent wrote; aborting or closing it is what the real one would report."""

    def __init__(self, demux: _Demux) -> None:
        self.written: list[bytes] = []
        self.aborted = False
        self._demux = demux

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self._demux.connection_lost(None)


def connection() -> tuple[ShimConnection, _Demux, FakeTransport]:
    demux = _Demux()
    transport = FakeTransport(demux)
    demux.connection_made(transport)  # type: ignore[arg-type]
    return ShimConnection(demux), demux, transport


def reply(request_id: str, body: bytes, kind: Kind = Kind.RESULT) -> bytes:
    return encode(kind, {"request_id": request_id, "duration_us": 1}, body)


async def start_calls(conn: ShimConnection, ids: list[str]) -> list[asyncio.Task]:
    tasks = [
        asyncio.create_task(conn.call(rid, encode(Kind.INVOKE, {"request_id": rid}, b"{}")))
        for rid in ids
    ]
    await asyncio.sleep(0)  # let each write its INVOKE and wait
    return tasks


@pytest.mark.parametrize("step", [1, 5, 1000])
async def test_replies_in_any_order_and_any_split_reach_their_calls(step: int) -> None:
    conn, demux, transport = connection()
    ids = ["a", "b", "c"]
    tasks = await start_calls(conn, ids)
    assert len(transport.written) == 3 and not any(t.done() for t in tasks)
    stream = reply("c", b'"C"') + reply("a", b'"A"', Kind.ERROR) + reply("b", b'"B"')
    for i in range(0, len(stream), step):
        demux.data_received(stream[i : i + step])
    frames = await asyncio.gather(*tasks)
    assert [(f.kind, f.header["request_id"], f.body) for f in frames] == [
        (Kind.ERROR, "a", b'"A"'),
        (Kind.RESULT, "b", b'"B"'),
        (Kind.RESULT, "c", b'"C"'),
    ]
    assert demux.pending == {}


async def test_abort_ends_every_call_in_flight_with_the_reason() -> None:
    conn, demux, transport = connection()
    tasks = await start_calls(conn, ["a", "b"])
    conn.abort("the instance was stopped because request x timed out")
    for task in tasks:
        with pytest.raises(CallAborted, match="request x timed out"):
            await task
    assert transport.aborted
    with pytest.raises(CallAborted):  # and no call starts on it afterwards
        await conn.call("c", b"")


async def test_a_reply_for_no_call_is_a_protocol_error_for_all() -> None:
    conn, demux, transport = connection()
    tasks = await start_calls(conn, ["a"])
    demux.data_received(reply("zzz", b"1"))
    with pytest.raises(ProtocolError, match="unknown request"):
        await tasks[0]
    assert transport.aborted


async def test_a_timed_out_call_leaves_no_waiter_behind() -> None:
    conn, demux, _ = connection()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await conn.call("slow", b"")
    assert demux.pending == {}


async def test_connection_lost_ends_calls_and_handshake() -> None:
    conn, demux, transport = connection()
    tasks = await start_calls(conn, ["a"])
    transport.close()
    with pytest.raises(ConnectionError):
        await tasks[0]
    with pytest.raises(InitError):
        await conn.handshake()


async def test_ready_before_handshake_is_kept() -> None:
    conn, demux, _ = connection()
    demux.data_received(encode(Kind.READY, {"init_duration_us": 42}))
    assert await conn.handshake() == 42


async def test_each_call_ends_at_its_own_timeout_and_the_others_go_on() -> None:
    conn, demux, _ = connection()
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = asyncio.create_task(conn.call("slow", b"", 0.2))
    quick = asyncio.create_task(conn.call("quick", b"", 0.05))
    answered = asyncio.create_task(conn.call("answered", b"", 0.01))
    await asyncio.sleep(0)
    demux.data_received(reply("answered", b"1"))
    assert (await answered).body == b"1"
    with pytest.raises(TimeoutError):
        await quick
    assert 0.05 <= loop.time() - started < 0.15
    assert not slow.done()
    with pytest.raises(TimeoutError):
        await slow
    assert loop.time() - started >= 0.2
    assert demux.pending == {} and not demux.deadlines


async def test_a_reply_in_time_leaves_no_deadline_and_a_failure_no_timer() -> None:
    conn, demux, _ = connection()
    task = asyncio.create_task(conn.call("a", b"", 5))
    await asyncio.sleep(0)
    demux.data_received(reply("a", b"1"))
    assert (await task).body == b"1"
    assert not demux.deadlines
    task = asyncio.create_task(conn.call("b", b"", 5))
    await asyncio.sleep(0)
    conn.abort("gone")
    with pytest.raises(CallAborted):
        await task
    assert not demux.deadlines and not demux.deadlines.armed
