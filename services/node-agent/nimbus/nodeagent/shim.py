"""The agent's end of one sandbox's connection: accept the shim, LOAD, wait for READY, exchange frames."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Awaitable
from pathlib import Path

from nimbus.nodeagent.protocol import Frame, Kind, ProtocolError, read_frame

# Payloads are bounded by the frame limit, not by the stream's line limit (unused here).
_READER_LIMIT = 1024 * 1024


class InitError(Exception):
    """The shim could not load the handler (or died before it could say so)."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(f"{error_type}: {message}")
        self.error_type = error_type
        self.message = message
        self.stack = stack or []


def listen(path: Path) -> socket.socket:
    """A listening socket for one shim; the agent owns it, so a stray process cannot squat the path."""
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


class ShimConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

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
                    "Runtime.ExitError", f"runtime exited with {describe_exit(exit_task.result())} before it connected"
                )
            conn, _ = accept_task.result()
        finally:
            for task in (accept_task, exit_task):
                task.cancel()
            await asyncio.gather(accept_task, exit_task, return_exceptions=True)
        reader, writer = await asyncio.open_unix_connection(sock=conn, limit=_READER_LIMIT)
        return cls(reader, writer)

    async def handshake(self) -> int:
        """The shim's first frame: its import time in µs, or the handler's import error."""
        try:
            frame = await read_frame(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            raise InitError("Runtime.ExitError", "runtime exited while loading the handler") from None
        if frame.kind is Kind.READY:
            return int(frame.header.get("init_duration_us", 0))
        if frame.kind is Kind.INIT_ERROR:
            h = frame.header
            raise InitError(
                str(h.get("errorType", "Runtime.Unknown")),
                str(h.get("errorMessage", "")),
                list(h.get("stackTrace", [])),
            )
        raise ProtocolError(f"expected READY, got {frame.kind}")

    async def send(self, frame: bytes) -> None:
        self._writer.write(frame)
        await self._writer.drain()

    async def call(self, frame: bytes) -> Frame:
        """Sends one INVOKE frame (one write) and reads its reply."""
        self._writer.write(frame)
        await self._writer.drain()
        return await read_frame(self._reader)

    def close(self) -> None:
        self._writer.close()


def describe_exit(status: int) -> str:
    """As Lambda words it: 'exit status 1' or 'signal: killed'."""
    if status < 0:
        try:
            name = signal.Signals(-status).name.removeprefix("SIG").lower()
        except ValueError:
            name = str(-status)
        return f"signal: {'killed' if name == 'kill' else name}"
    return f"exit status {status}"
