"""CPU per call of the invoker's HTTP/1.1 listener (parsing, the Protocol, formatting), with a
baseline in the same run.

    .venv/bin/python -m bench.http_cpu [--baseline FILE] [--calls N] [--rounds R]

Each variant is a copy of nimbus/invoker/http/server.py (the tree's, and a baseline such as
`git show REV:services/invoker/nimbus/invoker/http/server.py > /tmp/old.py`). Each is served by a
child process on uvloop with a handler that answers at once, and driven over keep-alive
connections with the request Envoy sends the invoker for a warm REST invoke (its headers and a
small JSON body), at c=1 and c=16 (16 connections, one request in flight on each). The figure is
the child's user+system CPU from /proc/<pid>/stat over the calls, in µs per call: the listener's
own cost, with no gateway, instance or network noise in it. Variants alternate round by round and
the median round is reported, so a busy machine shifts both alike. Then the parse alone (feed
the same request to each variant's RequestParser and take it out), timed in this process with
timeit, best of many repeats: the part that differs between variants, without the syscalls.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import timeit
from pathlib import Path
from typing import Any

from bench.procs import free_port

_TREE = Path(__file__).resolve().parent.parent / "services/invoker/nimbus/invoker/http/server.py"
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
_BODY = b'{"n": 1}'
# What Envoy forwards for `POST /v1/functions/noop:invoke` (its route adds the x-envoy-* and
# x-forwarded-* headers, and the edge filter its credential header).
REQUEST = (
    b"POST /v1/functions/noop:invoke HTTP/1.1\r\n"
    b"host: 127.0.0.1:8080\r\n"
    b"user-agent: bench/1\r\n"
    b"content-type: application/json\r\n"
    b"authorization: Bearer nk_0123456789abcdef0123456789abcdef\r\n"
    b"content-length: %d\r\n"
    b"x-forwarded-for: 127.0.0.1\r\n"
    b"x-forwarded-proto: http\r\n"
    b"x-envoy-external-address: 127.0.0.1\r\n"
    b"x-request-id: 6a1f3c1e-0b52-4a83-9d6e-1f2a3b4c5d6e\r\n"
    b"x-nimbus-credential: nk_0123456789abcdef0123456789abcdef\r\n"
    b"x-envoy-expected-rq-timeout-ms: 900000\r\n"
    b"\r\n" % len(_BODY)
) + _BODY


def _load(path: str, name: str = "bench_http_variant") -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _parse_us(path: str, name: str, repeats: int) -> float:
    """µs to parse REQUEST with the variant's RequestParser (best of `repeats`)."""
    parser = _load(path, name).RequestParser(6 << 20)

    def parse() -> None:
        parser.feed(REQUEST)
        if parser.next() is None:
            raise RuntimeError("the request did not parse")

    return min(timeit.repeat(parse, number=5000, repeat=repeats)) / 5000 * 1e6


def _serve(path: str, port: int) -> None:
    """The child: serves the variant at path until killed."""
    mod = _load(path)
    headers = [("content-type", "application/json"), ("x-nimbus-request-id", "r" * 32)]

    async def handler(req: object) -> object:
        return mod.HttpResponse(200, headers, b"null")

    def error_body(status: int, message: str) -> object:
        return mod.HttpResponse(status, [], message.encode())

    import uvloop

    uvloop.run(mod.HttpServer("127.0.0.1", port, handler, 6 << 20, error_body).run())


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * _TICK_S


def _drive(port: int, conns: int, calls: int) -> None:
    socks = []
    for _ in range(conns):
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(s)
    try:
        for _ in range(calls // conns):
            for s in socks:
                s.sendall(REQUEST)
            for s in socks:
                buf = b""
                while True:
                    buf += s.recv(65536)
                    end = buf.find(b"\r\n\r\n")
                    if end >= 0 and buf.endswith(b"null"):
                        break
                if not buf.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"bad answer: {buf[:80]!r}")
    finally:
        for s in socks:
            s.close()


def _wait_port(port: int) -> None:
    asyncio.run(_wait_port_async(port))


async def _wait_port_async(port: int) -> None:
    from bench.procs import wait_port

    await wait_port(port, 10)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", help="a copy of server.py to compare with")
    ap.add_argument("--calls", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    variants = {"tree": str(_TREE)}
    if args.baseline:
        variants = {"baseline": args.baseline, **variants}
    procs: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name, path in variants.items():
            port = free_port()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.http_cpu", "--serve", path, str(port)]
            )
            procs[name] = (proc, port)
            _wait_port(port)
        results: dict[tuple[str, int], list[float]] = {}
        for conns in (1, 16):
            for _proc, port in procs.values():
                _drive(port, conns, 500)  # warm up
            for _ in range(args.rounds):
                for name, (proc, port) in procs.items():
                    before = _cpu_s(proc.pid)
                    _drive(port, conns, args.calls)
                    cpu = _cpu_s(proc.pid) - before
                    results.setdefault((name, conns), []).append(cpu / args.calls * 1e6)
        print(f"listener CPU per call, µs (median of {args.rounds} rounds of {args.calls} calls)")
        for conns in (1, 16):
            line = [f"c={conns:<3}"]
            for name in procs:
                rounds = results[(name, conns)]
                line.append(
                    f"{name}: {statistics.median(rounds):6.1f} "
                    f"(min {min(rounds):.1f}, max {max(rounds):.1f})"
                )
            print("  ".join(line))
        best: dict[str, float] = {}
        for _ in range(args.rounds):
            for name, path in variants.items():
                us = _parse_us(path, f"bench_http_{name}", 5)
                best[name] = min(best.get(name, us), us)
        print("parse only, µs (best):  " + "  ".join(f"{n}: {v:.2f}" for n, v in best.items()))
    finally:
        for proc, _ in procs.values():
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        _serve(sys.argv[2], int(sys.argv[3]))
    else:
        main()
