"""The agent's end of one sandbox's connection: accept the shim, LOAD, wait for READY, then calls,
several in flight at once when the function's instance_concurrency allows, matched by request_id."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections import deque
from collections.abc import Awaitable
from pathlib import Path

from nimbus.common.deadlines import Deadlines
from nimbus.nodeagent.protocol import Frame, FrameDecoder, Kind, ProtocolError


class InitError(Exception):
    """The shim could not load the handler (or died before it could say so)."""

    def __init__(
        self,
        error_type: str,
        message: str,
        stack: list[str] | None = None,
        *,
        reported: bool = False,
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.stack = stack or []
        # The runtime said so in an INIT_ERROR frame (and logged it); else it died or hung.
        self.reported = reported


def listen(path: Path) -> socket.socket:
    """A listening socket for one shim; the agent owns it,
    so a stray process cannot squat the path."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        os.chmod(path, 0o600)
        sock.listen(1)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class CallAborted(ConnectionError):
    """The agent gave up on the instance (another call on it timed out or failed fatally), so the
    calls still in flight on it end too; the message says why."""


class _Demux(asyncio.Protocol):
    """Reads frames as they arrive and hands each reply to the call that waits for its request_id.

    Runs in the transport's data callback: a reply wakes its caller directly, with no reader task
    between them, so one call in flight costs what a plain read did."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: dict[str, asyncio.Future[Frame]] = {}
        self._decoder = FrameDecoder()
        self._control: deque[Frame] = deque()
        self._control_waiter: asyncio.Future[None] | None = None
        # Set while the transport's buffer is over its high-water mark.
        self.writable: asyncio.Future[None] | None = None
        self.failure: BaseException | None = None
        # The calls' deadlines by request_id: each call ends at its own, as asyncio.timeout would
        # end it, with one timer for them all.
        self.deadlines: Deadlines[str, None] = Deadlines(self._overdue)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as err:
            self.fail(err)
            return
        for frame in frames:
            if frame.kind is Kind.RESULT or frame.kind is Kind.ERROR:
                waiter = self.pending.pop(frame.header.get("request_id", ""), None)
                if waiter is None:
                    # A reply nobody asked for: the shim and the agent disagree about what runs.
                    self.fail(
                        ProtocolError(
                            f"reply for unknown request {frame.header.get('request_id')!r}"
                        )
                    )
                    return
                if not waiter.done():
                    waiter.set_result(frame)
            else:
                self._control.append(frame)
                self._wake_control()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(exc or ConnectionResetError("the runtime closed its connection"))

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    async def drain(self) -> None:
        if self.writable is not None:
            await asyncio.shield(self.writable)

    async def next_control(self) -> Frame:
        while not self._control:
            if self.failure is not None:
                raise self.failure
            self._control_waiter = asyncio.get_running_loop().create_future()
            await self._control_waiter
        return self._control.popleft()

    def _overdue(self, request_id: str, _: None) -> None:
        waiter = self.pending.get(request_id)
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())

    def fail(self, error: BaseException) -> None:
        """Ends every call in flight with `error`; the first failure is the one they all see."""
        if self.failure is None:
            self.failure = error
        self.deadlines.clear()
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(self.failure)
        self._wake_control()
        self.resume_writing()
        if self.transport is not None:
            self.transport.abort()

    def _wake_control(self) -> None:
        waiter, self._control_waiter = self._control_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class ShimConnection:
    def __init__(self, demux: _Demux) -> None:
        self._demux = demux

    @classmethod
    async def accept(cls, listener: socket.socket, exited: Awaitable[int]) -> ShimConnection:
        """Waits for the shim to connect, or raises InitError if its process exits first."""
        loop = asyncio.get_running_loop()
        accept_task = asyncio.ensure_future(loop.sock_accept(listener))
        exit_task = asyncio.ensure_future(exited)
        try:
            await asyncio.wait({accept_task, exit_task}, return_when=asyncio.FIRST_COMPLETED)
            if not accept_task.done():
                raise InitError(
                    "Runtime.ExitError",
                    f"runtime exited with {describe_exit(exit_task.result())} before it connected",
                )
            conn, _ = accept_task.result()
        finally:
            for task in (accept_task, exit_task):
                task.cancel()
            await asyncio.gather(accept_task, exit_task, return_exceptions=True)
        _, demux = await loop.connect_accepted_socket(_Demux, sock=conn)
        return cls(demux)

    async def handshake(self) -> int:
        """The shim's first frame: its import time in µs, or the handler's import error."""
        try:
            frame = await self._demux.next_control()
        except (ConnectionError, ProtocolError):
            raise InitError(
                "Runtime.ExitError", "runtime exited while loading the handler"
            ) from None
        if frame.kind is Kind.READY:
            return int(frame.header.get("init_duration_us", 0))
        if frame.kind is Kind.INIT_ERROR:
            h = frame.header
            raise InitError(
                str(h.get("errorType", "Runtime.Unknown")),
                str(h.get("errorMessage", "")),
                list(h.get("stackTrace", [])),
                reported=True,
            )
        raise ProtocolError(f"expected READY, got {frame.kind}")

    async def send(self, frame: bytes) -> None:
        self._write(frame)
        await self._demux.drain()

    async def call(self, request_id: str, frame: bytes, timeout_s: float | None = None) -> Frame:
        """Sends one INVOKE frame (one write) and waits for the reply that names request_id, for
        at most timeout_s if given (then raises TimeoutError, as
        `async with asyncio.timeout(timeout_s)`).

        Several calls may be in flight; each request_id at most once (the caller sees to that).
        Raises ConnectionError (CallAborted when the agent ended the instance) or ProtocolError."""
        demux = self._demux
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        waiter: asyncio.Future[Frame] = loop.create_future()
        demux.pending[request_id] = waiter
        try:
            self._write(frame)
            if deadline is not None:
                demux.deadlines.add(request_id, deadline, None)
            if demux.writable is not None:
                async with asyncio.timeout_at(deadline):
                    await demux.drain()
            return await waiter
        finally:
            # A timed-out or cancelled call: its late reply would now be a protocol error, which
            # is right, since the agent stops the instance after either.
            if demux.pending.get(request_id) is waiter:
                del demux.pending[request_id]
            demux.deadlines.discard(request_id)

    def abort(self, reason: str) -> None:
        """Ends the calls still in flight with CallAborted(reason) and drops the connection."""
        self._demux.fail(CallAborted(reason))

    def close(self) -> None:
        if self._demux.transport is not None:
            self._demux.transport.close()

    def _write(self, frame: bytes) -> None:
        demux = self._demux
        if demux.failure is not None:
            raise demux.failure
        assert demux.transport is not None
        demux.transport.write(frame)


def describe_exit(status: int) -> str:
    """As Lambda words it: 'exit status 1' or 'signal: killed'."""
    if status < 0:
        try:
            name = signal.Signals(-status).name.removeprefix("SIG").lower()
        except ValueError:
            name = str(-status)
        return f"signal: {'killed' if name == 'kill' else name}"
    return f"exit status {status}"
