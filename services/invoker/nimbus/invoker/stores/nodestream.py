"""Calls to one node-agent over one long-lived connection, matched to their replies by call id.

The connection is the node's invoke lane (framed TCP, nimbus.common.lane) when the node offers
one, else an InvokeStream: both carry the same messages, and the invoke path is mostly their
per-message cost, which is a fifth on the lane. It opens on the first call and again after it
breaks; when it breaks (the node died or restarted) every call waiting on it fails at once with
Unavailable, as a unary call to a dead node would.

A call whose caller gives up (deadline, cancellation) is not recalled: the node finishes it and
its reply is dropped, so an instance is never cut off mid-call by a client going away.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
from typing import cast

import grpc
from google.protobuf.message import DecodeError
from nimbus.common import lane, mtls, pki
from nimbus.common.deadlines import Deadlines
from nimbus.common.errors import DeadlineExceeded, Unavailable, from_status_number
from nimbus.internal.v1 import nodeagent_pb2, nodeagent_pb2_grpc

log = logging.getLogger(__name__)

Reply = nodeagent_pb2.StreamedInvokeResponse
Call = nodeagent_pb2.StreamedInvokeRequest
# Asking a node where its lane is, and connecting to it.
_OPEN_TIMEOUT_S = 2.0


class _Stream:
    """One open InvokeStream and the calls waiting on it."""

    def __init__(self, stub: nodeagent_pb2_grpc.NodeAgentStub, address: str) -> None:
        self.address = address
        self.call = stub.InvokeStream()
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.broken = False
        # grpc allows one send in flight per call: calls that come while one is being sent wait in
        # the outbox and go out together in the next message.
        self.outbox: list[nodeagent_pb2.StreamedInvokeRequest] = []
        self.writing = False
        # A context of its own: the stream outlives the call that opened it, and its reader must
        # not log under that call's trace.
        self.reader = asyncio.create_task(self._read(), context=contextvars.Context())

    async def _read(self) -> None:
        error: Exception
        try:
            async for batch in self.call:
                for reply in batch.replies:
                    waiter = self.pending.pop(reply.call_id, None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(reply)
            error = Unavailable(f"node-agent {self.address} ended the call stream")
        except grpc.aio.AioRpcError as err:
            error = Unavailable(
                f"node-agent {self.address} is unreachable: {err.code().name}: {err.details()}"
            )
        except asyncio.CancelledError:
            error = Unavailable(f"the stream to node-agent {self.address} was closed")
            raise
        finally:
            self.fail(error)

    def fail(self, error: Exception) -> None:
        self.broken = True
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(error)

    async def send(self, msg: nodeagent_pb2.StreamedInvokeRequest) -> None:
        """Queues the call; the first caller to find no send under way sends the outbox until it
        is empty (its own call first). A failed send fails every call waiting on the stream."""
        self.outbox.append(msg)
        if self.writing:
            return
        self.writing = True
        try:
            while self.outbox:
                calls, self.outbox = self.outbox, []
                await self.call.write(nodeagent_pb2.InvokeBatchRequest(calls=calls))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, grpc.aio.UsageError) as err:
            self.outbox = []
            self.fail(Unavailable(f"node-agent {self.address} is unreachable: {err}"))
        except asyncio.CancelledError:
            # The sender gave up mid-send (its deadline): the stream is wedged, and the calls it was
            # sending for others would wait forever.
            self.outbox = []
            self.fail(Unavailable(f"sending to node-agent {self.address} did not finish"))
            raise
        finally:
            self.writing = False

    @property
    def sending(self) -> bool:
        return self.writing or bool(self.outbox)

    def close(self) -> None:
        self.call.cancel()
        self.reader.cancel()


def _batch(calls: list[Call]) -> nodeagent_pb2.InvokeBatchRequest:
    return nodeagent_pb2.InvokeBatchRequest(calls=calls)


class _Lane(asyncio.Protocol):
    """One connection to a node's invoke lane and the calls waiting on it. Calls made within one
    turn of the event loop go out as one frame."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.pending: dict[int, asyncio.Future[Reply]] = {}
        self.broken = False
        self._reader = lane.FrameReader()
        self._writer: lane.FrameWriter[Call] = lane.FrameWriter(_batch)
        self._transport: asyncio.Transport | None = None
        # The pending calls' deadlines; the value is the call's timeout, for the error's message.
        self.deadlines: Deadlines[int, float] = Deadlines(self._overdue)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence the cast.
        self._transport = cast(asyncio.Transport, transport)
        self._writer.attach(self._transport)

    def data_received(self, data: bytes) -> None:
        try:
            batches = [
                nodeagent_pb2.InvokeBatchResponse.FromString(body)
                for body in self._reader.feed(data)
            ]
        except (lane.FrameError, DecodeError) as err:
            self.fail(Unavailable(f"node-agent {self.address} sent a broken reply: {err}"))
            self.close()
            return
        for batch in batches:
            for reply in batch.replies:
                waiter = self.pending.pop(reply.call_id, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        why = f": {exc}" if exc else ""
        self.fail(Unavailable(f"node-agent {self.address} closed the invoke lane{why}"))

    def fail(self, error: Exception) -> None:
        self.broken = True
        self._writer.drop()
        self.deadlines.clear()
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(error)

    async def send(self, msg: Call) -> None:
        if self.broken:
            raise Unavailable(f"node-agent {self.address} closed the invoke lane")
        self._writer.put(msg)

    def put(self, msg: Call) -> None:
        """send() for a lane known to be open."""
        self._writer.put(msg)

    def _overdue(self, call_id: int, timeout_s: float) -> None:
        waiter = self.pending.pop(call_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(DeadlineExceeded(f"peer did not answer within {timeout_s:.1f}s"))

    @property
    def sending(self) -> bool:
        return self._writer.sending

    def close(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class NodeStream:
    """Every call to one node-agent address."""

    def __init__(self, stub: nodeagent_pb2_grpc.NodeAgentStub, address: str) -> None:
        self._stub = stub
        self._address = address
        self._stream: _Stream | _Lane | None = None
        self._opening: asyncio.Task[_Stream | _Lane] | None = None
        self._ids = itertools.count(1)

    async def _open(self) -> _Stream | _Lane:
        stream = self._stream
        if stream is not None and not stream.broken:
            return stream
        if self._opening is None or self._opening.done():
            # One opening for every call that finds the connection down; a context of its own, as
            # the connection outlives the call that opened it. Its callers may all have given up.
            self._opening = asyncio.get_running_loop().create_task(
                self._connect(), context=contextvars.Context()
            )
            self._opening.add_done_callback(lambda t: t.cancelled() or t.exception())
        return await asyncio.shield(self._opening)

    async def _connect(self) -> _Stream | _Lane:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        lane_address = await self._lane_address()
        if not lane_address:
            try:
                self._stream = _Stream(self._stub, self._address)
            except grpc.aio.UsageError as err:  # the channel was closed under us
                raise Unavailable(f"node-agent {self._address} is unreachable: {err}") from err
            return self._stream
        host, _, port = lane_address.rpartition(":")
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT_S):
                tls = mtls.ssl_client_context("node-agent")
                _, protocol = await asyncio.get_running_loop().create_connection(
                    lambda: _Lane(self._address),
                    host,
                    int(port),
                    ssl=tls,
                    server_hostname=pki.server_name("node-agent") if tls else None,
                )
        except (OSError, TimeoutError) as err:
            raise Unavailable(
                f"node-agent {self._address}: cannot reach its invoke lane {lane_address}: {err}"
            ) from None
        self._stream = protocol
        return protocol

    async def _lane_address(self) -> str:
        """ "" when the node serves InvokeStream only (turned off, or a node-agent from before the
        lane)."""
        try:
            res = await self._stub.GetInvokeLane(
                nodeagent_pb2.GetInvokeLaneRequest(), timeout=_OPEN_TIMEOUT_S
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.UNIMPLEMENTED:
                return ""
            raise Unavailable(
                f"node-agent {self._address} is unreachable: {err.code().name}: {err.details()}"
            ) from None
        except grpc.aio.UsageError as err:
            raise Unavailable(f"node-agent {self._address} is unreachable: {err}") from err
        return str(res.address)

    async def invoke(
        self, req: nodeagent_pb2.InstanceInvokeRequest, timeout_s: float, traceparent: str = ""
    ) -> nodeagent_pb2.InstanceInvokeResponse:
        return await self.call(Call(invoke=req, traceparent=traceparent), timeout_s)

    async def call(self, msg: Call, timeout_s: float) -> nodeagent_pb2.InstanceInvokeResponse:
        """Sends msg (its call_id and wait_ms are set here) and waits for its reply."""
        loop = asyncio.get_running_loop()
        msg.call_id = call_id = next(self._ids)
        msg.wait_ms = max(1, int(timeout_s * 1000))
        waiter: asyncio.Future[Reply] = loop.create_future()
        deadline = loop.time() + timeout_s
        stream = self._stream
        try:
            if type(stream) is _Lane and not stream.broken:
                # The warm path: no asyncio.timeout() (~6 µs); the lane's deadline timer fails the
                # waiter at the same instant instead.
                stream.pending[call_id] = waiter
                stream.deadlines.add(call_id, deadline, timeout_s)
                stream.put(msg)
                reply = await waiter
            else:
                stream = None
                try:
                    async with asyncio.timeout_at(deadline):
                        stream = await self._open()
                        stream.pending[call_id] = waiter
                        if type(stream) is _Lane:
                            stream.deadlines.add(call_id, deadline, timeout_s)
                        await stream.send(msg)
                        reply = await waiter
                except TimeoutError:
                    raise DeadlineExceeded(f"peer did not answer within {timeout_s:.1f}s") from None
        finally:
            if stream is not None:
                stream.pending.pop(call_id, None)
                if type(stream) is _Lane:
                    stream.deadlines.discard(call_id)
        if reply.error_code:
            raise from_status_number(reply.error_code, reply.error_message)
        return reply.result

    @property
    def kind(self) -> str:
        """What carries the calls now: "lane", "stream", or "" before the first call."""
        if self._stream is None:
            return ""
        return "lane" if isinstance(self._stream, _Lane) else "stream"

    @property
    def in_flight(self) -> bool:
        """Some call is sent and waits for its reply."""
        stream = self._stream
        return stream is not None and bool(stream.pending) and not stream.sending

    def close(self) -> None:
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
