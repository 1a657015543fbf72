"""One keep-alive HTTP/1.1 connection to the gateway, stdlib only.

Latency matters on the invoke path (DESIGN.md: a write of headers and then body without
TCP_NODELAY costs ~40 ms per call), so every connection sets TCP_NODELAY and each request goes out
in a single `sendall` of headers and body together. A connection the server closed while idle is
noticed before reuse, and a request that fails on a reused connection is sent once more on a fresh
one (the usual keep-alive race); a request on a fresh connection is never repeated.

Not thread-safe: use one `Transport` (one `Client`) per thread.
"""

from __future__ import annotations

import http.client
import select
import socket
import ssl
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from nimbus.client.errors import NimbusConnectionError

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, SupportsRead

# Errors that mean "the idle keep-alive connection was closed under us".
_STALE_ERRORS = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    BrokenPipeError,
    ConnectionAbortedError,
)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    # Lower-case names; a repeated header keeps its last value.
    headers: dict[str, str]
    body: bytes


class _OneWriteMixin(http.client.HTTPConnection):
    """Holds the header block back until the body can be appended, then sends both at once.
    Mixed in before HTTPConnection or HTTPSConnection."""

    _pending_body: bytes | None = None

    def connect(self) -> None:
        super().connect()
        sock = self.sock
        if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(
        self, data: ReadableBuffer | SupportsRead[bytes] | Iterable[ReadableBuffer] | str
    ) -> None:
        body, self._pending_body = self._pending_body, None
        if body:
            # A body is pending only when endheaders() sends the header block, as bytes.
            data = bytes(cast("ReadableBuffer", data)) + body
        super().send(data)


class _HTTPConnection(_OneWriteMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWriteMixin, http.client.HTTPSConnection):
    pass


class Transport:
    def __init__(
        self, endpoint: str, *, timeout_s: float, ssl_context: ssl.SSLContext | None = None
    ):
        parsed = urllib.parse.urlsplit(endpoint)
        self.endpoint = endpoint
        self._https = parsed.scheme == "https"
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if self._https else 80)
        self._base_path = parsed.path.rstrip("/")
        self._timeout_s = timeout_s
        self._ssl_context = ssl_context
        self._conn: _OneWriteMixin | None = None
        self._used = False  # True once the current connection has carried a full exchange

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._used = False

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        """Sends one request and reads the whole response. `path` includes any query string."""
        url = self._base_path + path
        if self._conn is not None and self._used and _dropped(self._conn):
            self.close()
        reused = self._conn is not None and self._used
        try:
            return self._exchange(method, url, body, headers)
        except _STALE_ERRORS as e:
            self.close()
            if not reused:
                raise self._connection_error(e) from e
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise self._connection_error(e) from e
        try:
            return self._exchange(method, url, body, headers)
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise self._connection_error(e) from e

    def _exchange(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> Response:
        conn = self._connection()
        try:
            conn.putrequest(method, url, skip_accept_encoding=True)
            for name, value in headers.items():
                conn.putheader(name, value)
            if body is not None or method in ("POST", "PUT", "PATCH"):
                conn.putheader("Content-Length", str(len(body or b"")))
            conn._pending_body = body
            conn.endheaders()
            resp = conn.getresponse()
            data = resp.read()
        except BaseException:
            # Whatever broke the exchange (including Ctrl-C), the connection's state is unknown now.
            self.close()
            raise
        self._used = True
        if resp.will_close:
            self.close()
        return Response(
            status=resp.status,
            reason=resp.reason,
            headers={k.lower(): v for k, v in resp.getheaders()},
            body=data,
        )

    def _connection(self) -> _OneWriteMixin:
        if self._conn is None:
            if self._https:
                self._conn = _HTTPSConnection(
                    self._host, self._port, timeout=self._timeout_s, context=self._ssl_context
                )
            else:
                self._conn = _HTTPConnection(self._host, self._port, timeout=self._timeout_s)
            self._used = False
        return self._conn

    def _connection_error(self, e: BaseException) -> NimbusConnectionError:
        if isinstance(e, ConnectionRefusedError):
            return NimbusConnectionError(self.endpoint, "connection refused", refused=True)
        if isinstance(e, TimeoutError):
            return NimbusConnectionError(self.endpoint, f"no answer within {self._timeout_s:g} s")
        if isinstance(e, socket.gaierror):
            return NimbusConnectionError(
                self.endpoint, f"cannot resolve {self._host}: {e.strerror}"
            )
        if isinstance(e, http.client.RemoteDisconnected):
            return NimbusConnectionError(
                self.endpoint, "the server closed the connection without answering"
            )
        reason = getattr(e, "strerror", None) or str(e) or type(e).__name__
        return NimbusConnectionError(self.endpoint, reason)


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """True when an idle connection is closed (readable with EOF) or has unexpected bytes."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)
