"""The invoker's HTTP/1.1 listener: REST sync invokes (/v1/functions/{name}:invoke), the public
HTTP triggers (/fn/...) and the health check Envoy probes (/healthz). It counts the calls in
flight so a SIGTERM'd invoker answers them all before it goes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nimbus.invoker.http.server import HttpRequest, HttpResponse

HEALTH_PATH = "/healthz"

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpFront:
    def __init__(self, routes: list[tuple[str, Handler]], fallback: Handler) -> None:
        """routes: (path prefix, handler), first match wins; fallback takes the rest."""
        self._routes = routes
        self._fallback = fallback
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def draining(self) -> bool:
        return self._draining

    async def drain(self) -> None:
        """SIGTERM: fail the health check and wait for the calls in flight. The registry entry is
        gone already, so the gateway sends nothing new; what still comes is answered."""
        self._draining = True
        await self._idle.wait()

    async def handle(self, req: HttpRequest) -> HttpResponse:
        if req.path == HEALTH_PATH:
            if self._draining:
                return HttpResponse(503, [("content-type", "text/plain")], b"draining\n")
            return HttpResponse(200, [("content-type", "text/plain")], b"ok\n")
        handler = self._fallback
        for prefix, candidate in self._routes:
            if req.path.startswith(prefix):
                handler = candidate
                break
        self._in_flight += 1
        self._idle.clear()
        try:
            return await handler(req)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()
