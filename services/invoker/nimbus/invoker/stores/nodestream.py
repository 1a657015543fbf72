"""Calls to one node-agent over one long-lived InvokeStream, matched to their replies by call id.

A message on an open HTTP/2 stream costs about half of a unary call (no new stream, no headers,
no per-call deadline machinery), and the invoke path is mostly that cost. The stream opens on the
first call and again after it breaks; when it breaks (the node died or restarted) every call
waiting on it fails at once with Unavailable, as a unary call to a dead node would.

A call whose caller gives up (deadline, cancellation) is not recalled: the node finishes it and
its reply is dropped, so an instance is never cut off mid-call by a client going away.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging

import grpc

from nimbus.common.errors import DeadlineExceeded, Unavailable, from_status_number
from nimbus.internal.v1 import nodeagent_pb2, nodeagent_pb2_grpc

log = logging.getLogger(__name__)

Reply = nodeagent_pb2.StreamedInvokeResponse


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
            error = Unavailable(f"node-agent {self.address} is unreachable: {err.code().name}: {err.details()}")
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

    def close(self) -> None:
        self.call.cancel()
        self.reader.cancel()


class NodeStream:
    """Every call to one node-agent address."""

    def __init__(self, stub: nodeagent_pb2_grpc.NodeAgentStub, address: str) -> None:
        self._stub = stub
        self._address = address
        self._stream: _Stream | None = None
        self._ids = itertools.count(1)

    def _open(self) -> _Stream:
        stream = self._stream
        if stream is None or stream.broken:
            if stream is not None:
                stream.close()
            try:
                stream = self._stream = _Stream(self._stub, self._address)
            except grpc.aio.UsageError as err:  # the channel was closed under us
                raise Unavailable(f"node-agent {self._address} is unreachable: {err}") from err
        return stream

    async def invoke(
        self, req: nodeagent_pb2.InstanceInvokeRequest, timeout_s: float, traceparent: str = ""
    ) -> nodeagent_pb2.InstanceInvokeResponse:
        stream = self._open()
        call_id = next(self._ids)
        waiter: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        stream.pending[call_id] = waiter
        try:
            msg = nodeagent_pb2.StreamedInvokeRequest(
                call_id=call_id, invoke=req, wait_ms=max(1, int(timeout_s * 1000)), traceparent=traceparent
            )
            try:
                async with asyncio.timeout(timeout_s):
                    await stream.send(msg)
                    reply = await waiter
            except TimeoutError:
                raise DeadlineExceeded(f"peer did not answer within {timeout_s:.1f}s") from None
        finally:
            stream.pending.pop(call_id, None)
        if reply.error_code:
            raise from_status_number(reply.error_code, reply.error_message)
        return reply.result

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
