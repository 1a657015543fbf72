"""The floors' servers, each run as its own process by bench.floors:

    python -m bench.floor_servers echo PORT   a grpc.aio server whose one method returns its request
    python -m bench.floor_servers http PORT   a plain asyncio HTTP/1.1 server that calls the no-op
                                              handler in process (no platform at all)

Both listen on 127.0.0.1 only and run until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import uuid
from typing import Any

from bench.functions import NOOP_SOURCE

ECHO_SERVICE = "bench.Echo"
ECHO_METHOD = f"/{ECHO_SERVICE}/Echo"


class _Context:
    """The few attributes of a Lambda-style context a handler may read."""

    def __init__(self) -> None:
        self.request_id = str(uuid.uuid4())
        self.function_name = "noop"
        self.function_version = "$LATEST"
        self.memory_limit_mb = 128

    def get_remaining_time_ms(self) -> int:
        return 3000


def load_noop() -> Any:
    namespace: dict[str, Any] = {}
    exec(compile(NOOP_SOURCE, "main.py", "exec"), namespace)
    return namespace["handler"]


class _HttpProto(asyncio.Protocol):
    def __init__(self, handler: Any) -> None:
        self._handler = handler
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self._buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            if len(self._buf) < end + 4 + length:
                return
            body = bytes(self._buf[end + 4 : end + 4 + length])
            del self._buf[: end + 4 + length]
            event = json.loads(body) if body.strip() else {}
            out = json.dumps(self._handler(event, _Context())).encode()
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(out)}\r\n\r\n"
            )
            assert self._transport is not None
            # One write per response (asyncio sets TCP_NODELAY): no Nagle/delayed-ACK stall.
            self._transport.write(head.encode() + out)


async def _serve_http(port: int, stop: asyncio.Event) -> None:
    handler = load_noop()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _HttpProto(handler), "127.0.0.1", port)
    async with server:
        await stop.wait()


async def _serve_echo(port: int, stop: asyncio.Event) -> None:
    import grpc

    async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                ECHO_SERVICE, {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await stop.wait()
    await server.stop(0.5)


async def _main(kind: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if kind == "echo":
        await _serve_echo(port, stop)
    elif kind == "http":
        await _serve_http(port, stop)
    else:
        raise SystemExit(f"unknown server kind {kind!r}; use echo or http")


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python -m bench.floor_servers echo|http PORT")
    asyncio.run(_main(sys.argv[1], int(sys.argv[2])))


if __name__ == "__main__":
    main()
