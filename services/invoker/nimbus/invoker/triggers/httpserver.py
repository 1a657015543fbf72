"""A small asyncio HTTP/1.1 server for the public HTTP trigger listener (Envoy is its only client).

Keep-alive, Content-Length and chunked request bodies, TCP_NODELAY on every connection, and each
response sent with one write (DESIGN.md's Nagle trap). Parsing and formatting are pure functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
IDLE_TIMEOUT_S = 300.0
BODY_TIMEOUT_S = 60.0
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer", "proxy-connection"}
)


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

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def keep_alive(self) -> bool:
        conn = (self.header("connection") or "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in conn
        return "close" not in conn


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def parse_head(head: bytes) -> HttpRequest:
    """The request line and headers (head without the blank line); names lowercased."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes anything
        raise HttpError(400, "bad request head") from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise HttpError(400, "bad request line")
    method, target, version = parts
    if not target.startswith("/"):
        raise HttpError(400, "bad request target")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(400, "bad header line")
        headers.append((name.lower(), value.strip()))
    return HttpRequest(method=method.upper(), target=target, version=version, headers=headers)


def format_response(res: HttpResponse, *, head_only: bool = False, keep_alive: bool = True) -> bytes:
    """The whole response as one buffer."""
    try:
        reason = HTTPStatus(res.status).phrase
    except ValueError:
        reason = "Unknown"
    out = [f"HTTP/1.1 {res.status} {reason}\r\n"]
    for name, value in res.headers:
        if name.lower() in _HOP_BY_HOP or "\r" in name + value or "\n" in name + value:
            continue
        out.append(f"{name}: {value}\r\n")
    no_body = res.status in (204, 304) or 100 <= res.status < 200
    if not no_body:
        out.append(f"content-length: {len(res.body)}\r\n")
    if not keep_alive:
        out.append("connection: close\r\n")
    out.append("\r\n")
    head = "".join(out).encode("latin-1", errors="replace")
    return head if head_only or no_body else head + res.body


async def _read_chunked(reader: asyncio.StreamReader, max_body: int) -> bytes:
    body = bytearray()
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HttpError(400, "bad chunk size") from None
        if size == 0:
            # Trailers, up to the blank line.
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass
            return bytes(body)
        if len(body) + size > max_body:
            raise HttpError(413, f"request body over the limit of {max_body} bytes")
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def read_request(reader: asyncio.StreamReader, max_body: int) -> HttpRequest | None:
    """The next request on the connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as err:
        if err.partial.strip():
            raise HttpError(400, "incomplete request head") from None
        return None
    except asyncio.LimitOverrunError:
        raise HttpError(431, "request head too large") from None
    req = parse_head(head[:-4])
    async with asyncio.timeout(BODY_TIMEOUT_S):
        if "chunked" in (req.header("transfer-encoding") or "").lower():
            req.body = await _read_chunked(reader, max_body)
        else:
            length_text = req.header("content-length") or "0"
            if not length_text.isdigit():
                raise HttpError(400, "bad content-length")
            length = int(length_text)
            if length > max_body:
                raise HttpError(413, f"request body over the limit of {max_body} bytes")
            req.body = await reader.readexactly(length) if length else b""
    return req


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpServer:
    def __init__(self, host: str, port: int, handler: Handler, max_body: int, error_body: Callable[[int, str], HttpResponse],
                 closing: Callable[[], bool] = lambda: False) -> None:
        """closing(): true once the server is going away; each answer then closes its connection,
        so the gateway opens new ones elsewhere instead of reusing this one."""
        self._closing = closing
        self._host = host
        self._port = port
        self._handler = handler
        self._max_body = max_body
        self._error_body = error_body
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Background task: serves until cancelled."""
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD_BYTES, reuse_address=True)
        log.info("HTTP trigger listener up", extra={"fields": {"listen": f"{self._host}:{self._port}"}})
        try:
            async with self._server:
                await self._server.serve_forever()
        finally:
            for task in list(self._connections):
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT_S):
                        req = await read_request(reader, self._max_body)
                except HttpError as err:
                    writer.write(format_response(self._error_body(err.status, err.message), keep_alive=False))
                    await writer.drain()
                    return
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                if req is None:
                    return
                try:
                    res = await self._handler(req)
                except Exception:
                    log.exception("HTTP trigger handler failed")
                    res = self._error_body(500, "internal error")
                keep = req.keep_alive and not self._closing()
                writer.write(format_response(res, head_only=req.method == "HEAD", keep_alive=keep))
                await writer.drain()
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
