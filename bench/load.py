"""Runs one load-generator job in its own process
(`python -m bench.loadgen`) and reads its result."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict, dataclass

from bench.config import REPO
from bench.loadgen import Job
from bench.procs import terminate


@dataclass(frozen=True, slots=True)
class LoadResult:
    """Per call, in completion order: its issue index (call i used paths[i % len(paths)]), latency,
    success, captured headers and (when kept) body."""

    index: list[int]
    lat_us: list[int]
    ok: list[bool]
    headers: dict[str, list[str | None]]
    bodies: list[str]
    errors: int
    error_samples: list[str]
    elapsed_s: float
    started_at: float = 0.0
    warmup_errors: int = 0

    @property
    def ok_count(self) -> int:
        return sum(1 for o in self.ok if o)

    def ok_lat_us(self) -> list[int]:
        return [lat for lat, o in zip(self.lat_us, self.ok, strict=True) if o]

    def ok_header(self, name: str) -> list[str | None]:
        values = self.headers.get(name, [None] * len(self.ok))
        return [v for v, o in zip(values, self.ok, strict=True) if o]

    def ok_header_us(self, name: str) -> list[float | None]:
        """A numeric header per successful call, None where it was absent."""
        out: list[float | None] = []
        for v in self.ok_header(name):
            try:
                out.append(float(v) if v is not None else None)
            except ValueError:
                out.append(None)
        return out

    def ok_bodies(self) -> list[str]:
        # bodies is empty unless the job kept them (keep_body): then there are none to return.
        return [b for b, o in zip(self.bodies, self.ok, strict=False) if o]

    def rps(self) -> float:
        return round(self.ok_count / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0

    @classmethod
    def concat(cls, parts: list[LoadResult]) -> LoadResult:
        """Jobs run one after another as one result (indexes renumbered in order)."""
        names = {name for part in parts for name in part.headers}
        return cls(
            index=list(range(sum(len(p.ok) for p in parts))),
            lat_us=[v for p in parts for v in p.lat_us],
            ok=[v for p in parts for v in p.ok],
            headers={
                name: [v for p in parts for v in p.headers.get(name, [None] * len(p.ok))]
                for name in names
            },
            bodies=[v for p in parts for v in p.bodies],
            errors=sum(p.errors for p in parts),
            error_samples=[v for p in parts for v in p.error_samples][:10],
            elapsed_s=sum(p.elapsed_s for p in parts),
            started_at=parts[0].started_at if parts else 0.0,
            warmup_errors=sum(p.warmup_errors for p in parts),
        )


async def run_job(job: Job) -> LoadResult:
    """Runs the job in a child process bounded by the job's own bound plus a margin; raises
    RuntimeError with the child's stderr when it fails."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.loadgen",
        cwd=str(REPO),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(job.bound_s() + 15):
            stdout, stderr = await proc.communicate(json.dumps(asdict(job)).encode())
    except BaseException:
        await terminate(proc)
        raise
    if proc.returncode != 0:
        raise RuntimeError(
            f"loadgen exited {proc.returncode}: {stderr.decode(errors='replace')[-2000:]}"
        )
    data = json.loads(stdout)
    return LoadResult(
        index=data["index"],
        lat_us=data["lat_us"],
        ok=data["ok"],
        headers=data["headers"],
        bodies=data.get("bodies", []),
        errors=data["errors"],
        error_samples=data["error_samples"],
        elapsed_s=data["elapsed_s"],
        started_at=data.get("started_at", 0.0),
        warmup_errors=data.get("warmup_errors", 0),
    )
