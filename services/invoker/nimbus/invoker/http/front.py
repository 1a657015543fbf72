"""The invoker's HTTP/1.1 listener: REST sync invokes (/v1/functions/{name}:invoke), the public
HTTP triggers (/fn/... on the gateway's origin, any path on a namespace's own host) and the health
check Envoy probes (/healthz). It counts the calls in flight so a SIGTERM'd invoker answers them
all before it goes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from nimbus.invoker.http.server import HttpRequest, HttpResponse

HEALTH_PATH = "/healthz"

Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class HttpFront:
    def __init__(
        self,
        routes: list[tuple[str, Handler]],
        fallback: Handler,
        hosts: tuple[Callable[[str | None], object], Handler] | None = None,
    ) -> None:
        """routes: (path prefix, handler), first match wins; fallback takes the rest. hosts:
        (is_ours(Host), handler): a request whose Host it accepts goes there whatever its path
        (a function may well be called healthz)."""
        self._routes = routes
        self._fallback = fallback
        self._hosts = hosts
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
        hosts = self._hosts
        if hosts is not None and hosts[0](req.header("host")):
            handler = hosts[1]
        elif req.path == HEALTH_PATH:
            if self._draining:
                return HttpResponse(503, [("content-type", "text/plain")], b"draining\n")
            return HttpResponse(200, [("content-type", "text/plain")], b"ok\n")
        else:
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
