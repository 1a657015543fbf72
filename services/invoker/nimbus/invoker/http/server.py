"""A small asyncio HTTP/1.1 server for the invoker's listener (Envoy is its only client): the REST
invokes and the public HTTP triggers.

Keep-alive, Content-Length and chunked request bodies, TCP_NODELAY on every connection, and each
response sent with one write (DESIGN.md's Nagle trap). Requests are parsed by llhttp through
httptools (RequestParser, strict: see there), responses formatted here; neither does I/O. The
connection is an asyncio.Protocol rather than a StreamReader loop, and its idle and body timeouts
are one lazy timer per connection: a warm call arms no timer and runs no stream machinery (the
StreamReader loop with its three asyncio.timeout()s was ~40 µs of a call's CPU).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import cast

import httptools
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
# RequestParser's states.
_IDLE, _HEAD, _BODY = 0, 1, 2
# The common methods and versions, as llhttp hands them over, and as HttpRequest holds them.
_METHODS = {m.encode(): m for m in ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")}
_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
# The fields RequestParser checks itself.
_FRAMING = frozenset({"host", "transfer-encoding", "content-length"})


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# RequestParser's mark for a connection whose bytes are no longer HTTP (after an Upgrade): the
# requests before are answered, then it closes without an error answer.
_CLOSED = HttpError(400, "connection upgraded")


@dataclass(slots=True)
class HttpRequest:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    # Close the connection after the answer, whatever the headers say.
    closing: bool = False
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
        if self.closing:
            return False
        conn = self.header("connection")
        if self.version == "HTTP/1.0":
            return conn is not None and "keep-alive" in conn.lower()
        return conn is None or "close" not in conn.lower()


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


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
    """Cuts the bytes of one connection into requests, whatever the pieces they arrive in (no I/O).

    llhttp (through httptools, as uvicorn uses it) does the framing, strictly: a bad chunk size,
    a Content-Length that is not all digits, two Content-Lengths, Content-Length beside
    Transfer-Encoding, a Transfer-Encoding that does not end in chunked, bare LF, obsolete line
    folding and a field name with a space in it are all refused, and a chunk size has at most 16
    hex digits. On top of it, what RFC 9112 also asks of a server: 400 without exactly one Host
    in HTTP/1.1; 400 for Transfer-Encoding in HTTP/1.0 or not ending in chunked; 501 for a
    transfer coding besides chunked (gzip, chunked: we do not decode it); 505 for an HTTP version
    other than 1.x. And our own limits: 431 for a head over MAX_HEAD_BYTES, 413 for a body over
    max_body, 400 for a target that is not origin-form (Envoy, the only client, sends no other).
    Trailers are dropped, never merged into the headers.

    feed() the bytes, then take requests with next() until it answers None (more bytes needed).
    The requests complete before a malformed one are still handed out; then next() raises the
    HttpError, after which the connection is done."""

    __slots__ = (
        "_max_body",
        "_parser",
        "_done",
        "_error",
        "_state",
        "_url",
        "_headers",
        "_feeding",
        "_head_bound",
        "_body",
        "_body_size",
        "_unread",
        "_stalled",
        "_progress",
        "_pending",
        "on_header",
    )

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._done: deque[HttpRequest] = deque()
        self._error: HttpError | None = None
        # _IDLE between requests, _HEAD while a head is read, _BODY from its end to the body's.
        self._state = _IDLE
        self._url = b""
        # The head's fields as llhttp hands them over, decoded (a trailer lands here after the
        # head is complete and is dropped with the list at the next request: never merged in).
        self._headers: list[tuple[str, str]] = []
        # The size of the chunk being fed, and an upper bound on the head's size (its bytes came
        # in this chunk and those since it began): the head is measured only when that is large.
        self._feeding = 0
        self._head_bound = 0
        self._body: list[bytes] = []
        self._body_size = 0
        # Bytes fed and not yet handed out as requests (0 once all are taken).
        self._unread = 0
        # Bytes fed since llhttp last made progress (a head's end, body bytes, a chunk, a
        # request's end): bounds what it buffers for a head or trailer line that never ends.
        self._stalled = 0
        self._progress = False
        # The request whose head is read, until its body is.
        self._pending: HttpRequest | None = None

        # llhttp's per-field callback: a closure rather than a method, the cheapest call there is
        # once per header of every request. llhttp strips the blanks before a value, not after.
        def on_header(name: bytes, value: bytes) -> None:
            self._headers.append(
                (name.decode("latin-1").lower(), value.decode("latin-1").rstrip(" \t"))
            )

        self.on_header = on_header
        self._parser = httptools.HttpRequestParser(self)

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            return
        size = len(data)
        self._unread += size
        self._feeding = size
        if self._state == _HEAD:
            self._head_bound += size
        self._progress = False
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Upgrade or CONNECT: the request is answered as a plain one (Envoy does not pass
            # upgrades here) and the connection closed after it; the bytes after it are not HTTP.
            if self._done:
                self._done[-1].closing = True
            self._error = _CLOSED
            return
        except httptools.HttpParserCallbackError as err:
            inner = err.__context__
            self._error = inner if isinstance(inner, HttpError) else HttpError(400, "bad request")
            return
        except httptools.HttpParserInvalidMethodError:
            self._error = HttpError(501, "method not implemented")
            return
        except httptools.HttpParserError as err:
            self._error = HttpError(400, f"bad request: {err}")
            return
        if self._progress:
            self._stalled = 0
        else:
            self._stalled += len(data)
        if self._state != _IDLE and self._stalled > MAX_HEAD_BYTES:
            self._error = (
                HttpError(431, "request head too large")
                if self._state == _HEAD
                else HttpError(400, "chunk framing or trailers too large")
            )

    @property
    def in_body(self) -> bool:
        """A request's head is read and its body is not complete."""
        return self._state == _BODY

    @property
    def buffered(self) -> int:
        return self._unread

    def at_eof(self) -> None:
        """The client closed its side: a partial head is a 400 (a partial body is only a closed
        connection)."""
        if self._state == _HEAD and self._error is None:
            raise HttpError(400, "incomplete request head")

    def next(self) -> HttpRequest | None:
        done = self._done
        if done:
            req = done.popleft()
            if not done and self._state == _IDLE:
                self._unread = 0
            return req
        if self._error is not None and self._error is not _CLOSED:
            raise self._error
        return None

    # -- llhttp's callbacks (httptools calls them from feed_data) ---------------------------

    def on_message_begin(self) -> None:
        self._state = _HEAD
        self._url = b""
        self._headers = []
        self._head_bound = self._feeding

    def on_url(self, url: bytes) -> None:
        if self._url:
            url = self._url + url  # the target came in pieces
            if len(url) > MAX_HEAD_BYTES:
                raise HttpError(431, "request head too large")
        self._url = url

    def on_headers_complete(self) -> None:
        self._progress = True
        parser = self._parser
        version = parser.get_http_version()
        if version[:2] != "1.":
            raise HttpError(505, "HTTP version not supported")
        target = self._url.decode("latin-1")
        if target[:1] != "/":
            raise HttpError(400, "bad request target")
        headers = self._headers
        if self._head_bound > MAX_HEAD_BYTES:
            size = len(target) + sum(len(n) + len(v) + 4 for n, v in headers)
            if size > MAX_HEAD_BYTES:
                raise HttpError(431, "request head too large")
        host: str | None = None
        coding: str | None = None
        length: str | None = None
        for name, value in headers:
            if name in _FRAMING:
                if name == "host":
                    if host is not None:
                        raise HttpError(400, "a request needs exactly one Host")
                    host = value
                elif name == "transfer-encoding":
                    coding = value if coding is None else f"{coding},{value}"
                else:
                    length = value  # llhttp let only digits through, and only one
        if host is None and version == "1.1":
            raise HttpError(400, "a request needs exactly one Host")
        if coding is not None:
            if version == "1.0":
                raise HttpError(400, "Transfer-Encoding in an HTTP/1.0 request")
            codings = [c.strip() for c in coding.lower().split(",")]
            if codings[-1] != "chunked":
                raise HttpError(400, "Transfer-Encoding that does not end in chunked")
            if len(codings) > 1:
                raise HttpError(501, f"transfer coding not implemented: {coding}")
        elif length is not None:
            if int(length) > self._max_body:
                raise HttpError(413, f"request body over the limit of {self._max_body} bytes")
        self._state = _BODY
        method = parser.get_method()
        self._pending = HttpRequest(
            _METHODS.get(method) or method.decode("ascii"),
            target,
            _VERSIONS.get(version) or f"HTTP/{version}",
            headers,
        )
        self._headers = []  # trailers land here, and are dropped

    def on_body(self, body: bytes) -> None:
        self._progress = True
        self._body_size += len(body)
        if self._body_size > self._max_body:
            raise HttpError(413, f"request body over the limit of {self._max_body} bytes")
        self._body.append(body)

    def on_chunk_header(self) -> None:
        self._progress = True

    def on_message_complete(self) -> None:
        self._progress = True
        req = self._pending
        assert req is not None
        self._pending = None
        body = self._body
        if body:
            req.body = body[0] if len(body) == 1 else b"".join(body)
            self._body = []
            self._body_size = 0
        self._state = _IDLE
        self._done.append(req)


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
