"""The load generator, run as its own process: `python -m bench.loadgen < job.json > result.json`.

A job is a closed loop of `concurrency` workers calling one HTTP/1.1 or gRPC endpoint. Every loop is
bounded in count and in time: a warm-up phase (warmup_calls, at most warmup_s), then a measured
phase (count calls, at most duration_s), each call at most call_timeout_s, and the whole process at
most the sum of those plus a margin. It only needs the standard library and grpcio, and it takes
pre-serialized gRPC requests, so it imports none of Nimbus.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.httpclient import Connection, build_request

_MARGIN_S = 10.0
_ERROR_SAMPLES = 5


@dataclass(frozen=True, slots=True)
class Job:
    kind: str  # "http" | "grpc"
    host: str
    port: int
    concurrency: int = 1
    count: int = 1000
    duration_s: float = 30.0
    warmup_calls: int = 0
    warmup_s: float = 5.0
    call_timeout_s: float = 30.0
    # http: the paths are used in turn, call i takes paths[i % len(paths)]
    method: str = "POST"
    paths: tuple[str, ...] = ("/",)
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "{}"
    # grpc: the full method name and the serialized request
    grpc_method: str = ""
    request_b64: str = ""
    metadata: tuple[tuple[str, str], ...] = ()
    # response headers (or gRPC initial metadata) to return per call; a call whose response
    # carries one of fail_headers counts as an error
    capture: tuple[str, ...] = ()
    fail_headers: tuple[str, ...] = ()
    # return each call's response body (text), for the few jobs that need them (async ids)
    keep_body: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Job:
        d = dict(d)
        for name in ("paths", "capture", "fail_headers"):
            if name in d:
                d[name] = tuple(d[name])
        if "metadata" in d:
            d["metadata"] = tuple((str(k), str(v)) for k, v in d["metadata"])
        return cls(**d)

    def bound_s(self) -> float:
        return self.warmup_s + self.duration_s + 2 * self.call_timeout_s + _MARGIN_S


@dataclass(slots=True)
class Outcome:
    index: list[int] = field(default_factory=list)
    lat_us: list[int] = field(default_factory=list)
    ok: list[bool] = field(default_factory=list)
    headers: dict[str, list[str | None]] = field(default_factory=dict)
    bodies: list[str] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    started_at: float = 0.0  # epoch seconds when the measured phase began
    warmup_errors: int = 0

    def record(
        self,
        index: int,
        lat_us: int,
        ok: bool,
        hdrs: dict[str, str],
        job: Job,
        error: str,
        body: str,
    ) -> None:
        capture = job.capture
        self.index.append(index)
        if job.keep_body:
            self.bodies.append(body)
        self.lat_us.append(lat_us)
        self.ok.append(ok)
        for name in capture:
            self.headers.setdefault(name, []).append(hdrs.get(name))
        if not ok:
            self.errors += 1
            if len(self.error_samples) < _ERROR_SAMPLES:
                self.error_samples.append(error)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "lat_us": self.lat_us,
            "ok": self.ok,
            "headers": self.headers,
            "bodies": self.bodies,
            "errors": self.errors,
            "error_samples": self.error_samples,
            "elapsed_s": round(self.elapsed_s, 4),
            "started_at": self.started_at,
            "warmup_errors": self.warmup_errors,
        }


class _Caller:
    """One call at a time on one connection: returns (ok, headers, error text, body text)."""

    async def call(self, index: int) -> tuple[bool, dict[str, str], str, str]:
        raise NotImplementedError

    async def close(self) -> None:
        return None


class _HttpCaller(_Caller):
    def __init__(self, job: Job) -> None:
        self._job = job
        self._conn = Connection(job.host, job.port)
        host = f"{job.host}:{job.port}"
        body = job.body.encode()
        self._requests = [build_request(job.method, host, p, job.headers, body) for p in job.paths]

    async def call(self, index: int) -> tuple[bool, dict[str, str], str, str]:
        res = await self._conn.request(self._requests[index % len(self._requests)])
        failed = [h for h in self._job.fail_headers if h in res.headers]
        ok = res.status == 200 and not failed
        error = "" if ok else f"HTTP {res.status} {failed or ''} {res.body[:200]!r}"
        body = res.body.decode(errors="replace") if self._job.keep_body else ""
        return ok, res.headers, error, body

    async def close(self) -> None:
        self._conn.close()


class _GrpcCaller(_Caller):
    def __init__(self, job: Job, channel: Any) -> None:
        self._job = job
        self._call = channel.unary_unary(job.grpc_method)
        self._request = base64.b64decode(job.request_b64)
        self._metadata = tuple(job.metadata) or None

    async def call(self, index: int) -> tuple[bool, dict[str, str], str, str]:
        import grpc

        call = self._call(self._request, metadata=self._metadata, timeout=self._job.call_timeout_s)
        try:
            response = await call
        except grpc.aio.AioRpcError as err:
            return False, {}, f"{err.code().name}: {err.details()}", ""
        md = await call.initial_metadata()
        hdrs = {str(k): str(v) for k, v in (md or ())}
        failed = [h for h in self._job.fail_headers if h in hdrs]
        body = bytes(response).decode(errors="replace") if self._job.keep_body else ""
        return not failed, hdrs, f"function error {failed}" if failed else "", body


async def _phase(
    job: Job, callers: list[_Caller], count: int, duration_s: float, out: Outcome | None
) -> int:
    """Runs the workers until count calls were issued or duration_s passed; returns errors when
    out is None (warm-up), else records into out."""
    issued = 0
    errors = 0
    deadline = time.monotonic() + duration_s

    async def worker(caller: _Caller) -> None:
        nonlocal issued, errors
        while issued < count and time.monotonic() < deadline:
            index = issued
            issued += 1
            t0 = time.perf_counter_ns()
            try:
                async with asyncio.timeout(job.call_timeout_s):
                    ok, hdrs, error, body = await caller.call(index)
            except Exception as err:  # every failure of one call is a counted error, not a crash
                ok, hdrs, error, body = False, {}, f"{type(err).__name__}: {err}", ""
            lat_us = (time.perf_counter_ns() - t0) // 1000
            if out is not None:
                out.record(index, lat_us, ok, hdrs, job, error, body)
            elif not ok:
                errors += 1

    await asyncio.gather(*(worker(c) for c in callers))
    return errors


async def run(job: Job) -> Outcome:
    channel: Any = None
    callers: list[_Caller]
    if job.kind == "http":
        callers = [_HttpCaller(job) for _ in range(job.concurrency)]
    elif job.kind == "grpc":
        import grpc

        channel = grpc.aio.insecure_channel(f"{job.host}:{job.port}")
        callers = [_GrpcCaller(job, channel) for _ in range(job.concurrency)]
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")
    out = Outcome()
    try:
        async with asyncio.timeout(job.bound_s()):
            if job.warmup_calls > 0:
                out.warmup_errors = await _phase(job, callers, job.warmup_calls, job.warmup_s, None)
            t0 = time.perf_counter()
            out.started_at = time.time()
            await _phase(job, callers, job.count, job.duration_s, out)
            out.elapsed_s = time.perf_counter() - t0
    finally:
        for c in callers:
            await c.close()
        if channel is not None:
            await channel.close()
    return out


def main() -> None:
    job = Job.from_dict(json.loads(sys.stdin.read()))
    out = asyncio.run(run(job))
    sys.stdout.write(json.dumps(out.to_json()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
