"""The node's invoke lane: InvokeStream's messages over framed TCP (nimbus.common.lane), in
mutual TLS; only invokers may connect.

Invokers learn its address from GetInvokeLane and keep one connection per node. Each call runs in
its own task through the same path as a call on InvokeStream; the replies that finish within one
turn of the event loop go out as one frame. A connection that breaks (the invoker died) cancels
the calls it carried, as a broken stream or a cancelled unary call would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import cast

from google.protobuf.message import DecodeError
from nimbus.common import lane, mtls
from nimbus.common.logs import kv
from nimbus.internal.v1 import nodeagent_pb2

log = logging.getLogger(__name__)

Request = nodeagent_pb2.StreamedInvokeRequest
Reply = nodeagent_pb2.StreamedInvokeResponse
RunCall = Callable[[Request], Awaitable[Reply]]
# The lane carries InvokeStream's calls, so the same callers may use it (nimbus.common.mtls); the
# connection is mutual TLS with the cluster's certificates.
LANE_METHOD = "/nimbus.internal.v1.NodeAgent/InvokeStream"


def _batch(replies: list[Reply]) -> nodeagent_pb2.InvokeBatchResponse:
    return nodeagent_pb2.InvokeBatchResponse(replies=replies)


class _Connection(asyncio.Protocol):
    def __init__(self, run_call: RunCall, connections: set[_Connection]) -> None:
        self._run_call = run_call
        self._connections = connections
        self._reader = lane.FrameReader()
        self._writer: lane.FrameWriter[Reply] = lane.FrameWriter(_batch)
        self._transport: asyncio.Transport | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        refusal = mtls.socket_refusal(transport, LANE_METHOD)
        if refusal:
            log.warning("invoke lane: caller refused", extra=kv(reason=refusal))
            transport.abort()  # type: ignore[attr-defined]
            return
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self._transport = cast(asyncio.Transport, transport)
        self._writer.attach(self._transport)
        self._connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            bodies = self._reader.feed(data)
            batches = [nodeagent_pb2.InvokeBatchRequest.FromString(body) for body in bodies]
        except (lane.FrameError, DecodeError) as err:
            log.warning(
                "invoke lane: a peer sent garbage; closing its connection", extra=kv(error=str(err))
            )
            self.abort()
            return
        loop = asyncio.get_running_loop()
        for batch in batches:
            for msg in batch.calls:
                task = loop.create_task(self._run(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _run(self, msg: Request) -> None:
        self._writer.put(await self._run_call(msg))

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        for task in list(self._tasks):
            task.cancel()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()  # writes what is buffered first

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class InvokeLane:
    def __init__(self, run_call: RunCall, listen_addr: str) -> None:
        self._run_call = run_call
        self._listen_addr = listen_addr
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.address = ""

    async def start(self) -> None:
        host, _, port = self._listen_addr.rpartition(":")
        self._server = await asyncio.get_running_loop().create_server(
            lambda: _Connection(self._run_call, self._connections),
            host,
            int(port),
            ssl=mtls.ssl_server_context(),
        )
        bound = self._server.sockets[0].getsockname()[1]
        self.address = f"{host}:{bound}"
        log.info("invoke lane listening", extra=kv(address=self.address))

    async def close(self) -> None:
        """After the drain: the calls have finished and their replies are written."""
        self.address = ""
        if self._server is None:
            return
        self._server.close()
        for conn in list(self._connections):
            conn.close()
        await self._server.wait_closed()
