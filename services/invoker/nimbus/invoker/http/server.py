"""A small asyncio HTTP/1.1 server for the invoker's listener (Envoy is its only client): the REST
invokes and the public HTTP triggers.

Keep-alive, Content-Length and chunked request bodies, TCP_NODELAY on every connection, and each
response sent with one write (DESIGN.md's Nagle trap). Parsing (RequestParser) and formatting are
pure; the connection is an asyncio.Protocol rather than a StreamReader loop, and its idle and body
timeouts are one lazy timer per connection: a warm call arms no timer and runs no stream machinery
(the StreamReader loop with its three asyncio.timeout()s was ~40 µs of a call's CPU).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

from nimbus.common import mtls

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 300.0
BODY_TIMEOUT_S = 60.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
    }
)
_REASONS = {s.value: s.phrase for s in HTTPStatus}
# Status lines and their formatted heads, by status.
_STATUS_LINES: dict[int, str] = {}


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    path: str = field(init=False)
    query: str = field(init=False)

    def __post_init__(self) -> None:
        self.path, _, self.query = self.target.partition("?")

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def keep_alive(self) -> bool:
        conn = self.header("connection")
        if self.version == "HTTP/1.0":
            return conn is not None and "keep-alive" in conn.lower()
        return conn is None or "close" not in conn.lower()


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def parse_head(head: bytes | bytearray) -> HttpRequest:
    """The request line and headers (head without the blank line); names lowercased."""
    text = head.decode("latin-1")
    request_line, _, rest = text.partition("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, target, version = parts
    if not target.startswith("/"):
        raise HttpError(400, "bad request target")
    headers: list[tuple[str, str]] = []
    if rest:
        append = headers.append
        for line in rest.split("\r\n"):
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                if not line:
                    continue
                raise HttpError(400, "bad header line")
            append((name.lower(), value.strip()))
    return HttpRequest(method.upper(), target, version, headers)


def _status_line(status: int) -> str:
    line = _STATUS_LINES.get(status)
    if line is None:
        line = f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        if status in _REASONS:
            _STATUS_LINES[status] = line
    return line


def format_response(
    res: HttpResponse, *, head_only: bool = False, keep_alive: bool = True
) -> bytes:
    """The whole response as one buffer."""
    status = res.status
    out = [_status_line(status)]
    for name, value in res.headers:
        if (
            name.lower() in _HOP_BY_HOP
            or "\r" in name
            or "\n" in name
            or "\r" in value
            or "\n" in value
        ):
            continue
        out += (name, ": ", value, "\r\n")
    no_body = status in (204, 304) or 100 <= status < 200
    if not no_body:
        out += ("content-length: ", str(len(res.body)), "\r\n")
    out.append("\r\n" if keep_alive else "connection: close\r\n\r\n")
    head = "".join(out).encode("latin-1", errors="replace")
    return head if head_only or no_body else head + res.body


class RequestParser:
    """Cuts the bytes of one connection into requests, whatever the chunks they arrive in (no I/O).

    feed() the bytes, then take requests with next() until it answers None (more bytes needed);
    a malformed request raises HttpError, after which the connection is done."""

    __slots__ = ("_max_body", "_buf", "_req", "_length", "_chunks", "_chunked_size", "_trailers")

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._buf = bytearray()
        # The request whose head is read and whose body is not yet complete.
        self._req: HttpRequest | None = None
        self._length = 0
        self._chunks: list[bytes] | None = None
        self._chunked_size = 0
        self._trailers = False

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def in_body(self) -> bool:
        """A request's head is read and its body is not complete."""
        return self._req is not None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def at_eof(self) -> None:
        """The client closed its side: a partial head is a 400 (a partial body is only a closed
        connection)."""
        if self._req is None and self._buf.strip():
            raise HttpError(400, "incomplete request head")

    def next(self) -> HttpRequest | None:
        buf = self._buf
        req = self._req
        if req is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0 or end > MAX_HEAD_BYTES:
                if end > MAX_HEAD_BYTES or len(buf) > MAX_HEAD_BYTES:
                    raise HttpError(431, "request head too large")
                return None
            req = parse_head(buf[:end])
            del buf[: end + 4]
            encoding = req.header("transfer-encoding")
            if encoding is not None and "chunked" in encoding.lower():
                self._chunks, self._chunked_size, self._trailers = [], 0, False
            else:
                length_text = req.header("content-length") or "0"
                if not length_text.isdigit():
                    raise HttpError(400, "bad content-length")
                length = int(length_text)
                if length > self._max_body:
                    raise HttpError(413, f"request body over the limit of {self._max_body} bytes")
                self._chunks, self._length = None, length
            self._req = req
        if self._chunks is None:
            length = self._length
            if len(buf) < length:
                return None
            if length:
                req.body = bytes(buf[:length])
                del buf[:length]
        elif not self._chunked_body(buf, req):
            return None
        self._req = None
        return req

    def _chunked_body(self, buf: bytearray, req: HttpRequest) -> bool:
        chunks = self._chunks
        assert chunks is not None
        while True:
            eol = buf.find(b"\r\n")
            if eol < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise HttpError(
                        400, "bad chunk size" if not self._trailers else "trailers too large"
                    )
                return False
            if self._trailers:
                # Trailers, up to the blank line.
                del buf[: eol + 2]
                if eol == 0:
                    req.body = b"".join(chunks)
                    self._chunks = None
                    return True
                continue
            size_text = bytes(buf[:eol]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError(400, "bad chunk size") from None
            if size == 0:
                del buf[: eol + 2]
                self._trailers = True
                continue
            if self._chunked_size + size > self._max_body:
                raise HttpError(413, f"request body over the limit of {self._max_body} bytes")
            if len(buf) < eol + 2 + size + 2:
                return False
            chunks.append(bytes(buf[eol + 2 : eol + 2 + size]))
            self._chunked_size += size
            del buf[: eol + 2 + size + 2]


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpServer:
    def __init__(
        self,
        host: str,
        port: int,
        handler: Handler,
        max_body: int,
        error_body: Callable[[int, str], HttpResponse],
        closing: Callable[[], bool] = lambda: False,
    ) -> None:
        """closing(): true once the server is going away; each answer then closes its connection,
        so the gateway opens new ones elsewhere instead of reusing this one."""
        self._closing = closing
        self._host = host
        self._port = port
        self._handler = handler
        self._max_body = max_body
        self._error_body = error_body
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    async def run(self) -> None:
        """Background task: serves until cancelled."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self),
            self._host,
            self._port,
            reuse_address=True,
            ssl=mtls.ssl_server_context(),  # mutual TLS: Envoy only (nimbus.common.mtls)
        )
        log.info("HTTP listener up", extra={"fields": {"listen": f"{self._host}:{self._port}"}})
        try:
            async with self._server:
                await self._server.serve_forever()
        finally:
            for conn in list(self._connections):
                conn.abort()


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered one at a time, in order, each in a task of
    its own."""

    def __init__(self, server: HttpServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._parser = RequestParser(server._max_body)
        self._transport: asyncio.Transport | None = None
        # A request is being answered; what arrives meanwhile waits in the parser.
        self._busy = False
        self._task: asyncio.Task[None] | None = None
        self._eof = False
        self._in_body = False
        self._closed = False
        self._reading_paused = False
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        # The idle or body deadline (loop time) and the one timer that checks it when it fires.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if mtls.socket_refusal(transport, mtls.INVOKER_HTTP):
            transport.abort()  # type: ignore[attr-defined]
            self._closed = True
            return
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._server._connections.add(self)
        self._wait(IDLE_TIMEOUT_S)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        if self._busy:
            if (
                self._parser.buffered > MAX_HEAD_BYTES
                and not self._reading_paused
                and self._transport is not None
            ):
                self._reading_paused = True
                self._transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool:
        self._eof = True
        if not self._busy:
            self._at_eof()
        # Keep the transport open for the answer to a request still being handled.
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._server._connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        # A call in flight runs on: the gateway went away, not the call's reason to exist.

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- requests ---------------------------------------------------------------------------

    def _next(self) -> None:
        """Starts answering the next complete request, if one is buffered."""
        if self._closed:
            return
        try:
            req = self._parser.next()
        except HttpError as err:
            self._fail(err)
            return
        if req is None:
            if self._eof:
                self._at_eof()
            elif self._parser.in_body and not self._in_body:
                # The body must follow within BODY_TIMEOUT_S of the head, and within the idle
                # deadline.
                self._in_body = True
                self._wait(min(BODY_TIMEOUT_S, self._deadline - self._loop.time()))
            return
        self._in_body = False
        self._busy = True
        self._task = self._loop.create_task(self._answer(req))

    async def _answer(self, req: HttpRequest) -> None:
        server = self._server
        try:
            try:
                res = await server._handler(req)
            except Exception:
                log.exception("HTTP handler failed")
                res = server._error_body(500, "internal error")
            transport = self._transport
            if self._closed or transport is None:
                return
            keep = req.keep_alive and not server._closing()
            transport.write(format_response(res, head_only=req.method == "HEAD", keep_alive=keep))
            if not keep:
                transport.close()
                return
            if self._write_paused:
                self._drained = self._loop.create_future()
                await self._drained
                self._drained = None
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception:
            log.exception("HTTP connection failed")
            self.abort()
            return
        finally:
            self._task = None
        self._busy = False
        if self._reading_paused and not self._closed and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()
        self._wait(IDLE_TIMEOUT_S)
        self._next()

    def _at_eof(self) -> None:
        try:
            self._parser.at_eof()
        except HttpError as err:
            self._fail(err)
            return
        if self._transport is not None:
            self._transport.close()

    def _fail(self, err: HttpError) -> None:
        if self._transport is not None and not self._closed:
            self._transport.write(
                format_response(self._server._error_body(err.status, err.message), keep_alive=False)
            )
            self._transport.close()

    def abort(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None and not self._closed:
            self._transport.close()

    # -- the idle and body deadlines ---------------------------------------------------------

    def _wait(self, timeout_s: float) -> None:
        """Closes the connection if no (complete) request comes within timeout_s. Arms a timer only
        when none is armed for an earlier time: one that fires early re-arms itself for the current
        deadline, so a warm call, which only pushes the idle deadline later, arms none."""
        self._deadline = deadline = self._loop.time() + timeout_s
        timer = self._timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()  # an earlier deadline (a body's): re-armed below
            timer = None
        if timer is None:
            self._timer = self._loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self._closed or self._busy:
            return  # no deadline while a request is answered; the next _wait() arms one
        if self._loop.time() >= self._deadline:
            if self._transport is not None:
                self._transport.close()
            return
        self._timer = self._loop.call_at(self._deadline, self._expire)
