"""A minimal asyncio HTTP/1.1 keep-alive client: one connection, one request at a time.

Built on asyncio.Protocol so the client's own cost per call stays small next to what it measures
(asyncio streams cost about twice as much). The response parser is pure and unit-tested.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class HttpError(RuntimeError):
    """The connection broke or the response was not HTTP/1.1 we can read."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def parse_response(buf: bytes | bytearray) -> tuple[Response, int] | None:
    """(response, bytes consumed) once buf holds one whole response, else None.

    Understands Content-Length and chunked bodies; header names come back lower-cased.
    Raises HttpError on a malformed status line or chunk size.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    parts = head[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise HttpError(f"bad status line {head[0]!r}")
    headers: dict[str, str] = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    start = end + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunked = _parse_chunked(buf, start)
        if chunked is None:
            return None
        body, consumed = chunked
        return Response(int(parts[1]), headers, body), consumed
    length = int(headers.get("content-length", "0") or 0)
    if len(buf) < start + length:
        return None
    return Response(int(parts[1]), headers, bytes(buf[start : start + length])), start + length


def _parse_chunked(buf: bytes | bytearray, pos: int) -> tuple[bytes, int] | None:
    body = bytearray()
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size_text = bytes(buf[pos:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(f"bad chunk size {size_text!r}") from None
        data_start = line_end + 2
        if size == 0:
            # The last chunk; trailers (usually none) end with an empty line.
            if len(buf) < data_start + 2:
                return None
            if buf[data_start : data_start + 2] == b"\r\n":
                return bytes(body), data_start + 2
            trailer_end = buf.find(b"\r\n\r\n", data_start)
            return None if trailer_end < 0 else (bytes(body), trailer_end + 4)
        if len(buf) < data_start + size + 2:
            return None
        body += buf[data_start : data_start + size]
        pos = data_start + size + 2


def build_request(method: str, host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Proto(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            parsed = parse_response(self.buf)
        except HttpError as err:
            self.waiter.set_exception(err)
            return
        if parsed is not None:
            response, consumed = parsed
            del self.buf[:consumed]
            self.waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection closed: {exc or 'by peer'}"))


class Connection:
    """One keep-alive connection; reconnects on the next call after the peer closed it."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._proto: _Proto | None = None

    async def _connect(self) -> _Proto:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Proto, self.host, self.port)
        return proto

    async def request(self, raw: bytes) -> Response:
        """Sends one pre-built request (build_request) and returns its response."""
        if self._proto is None or self._proto.closed:
            self._proto = await self._connect()
        proto = self._proto
        assert proto.transport is not None
        proto.buf.clear()
        proto.waiter = asyncio.get_running_loop().create_future()
        proto.transport.write(raw)
        try:
            response = await proto.waiter
        except BaseException:
            self.close()
            raise
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None
