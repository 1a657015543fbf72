"""The bench's configuration, read once from an environment mapping passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SECTIONS = (
    "warm",
    "floors",
    "cold_start",
    "throughput",
    "async",
    "autoscale",
    "memory",
    "peer",
    "peer_async",
)


class BenchConfigError(ValueError):
    """A bad NIMBUS_BENCH_* variable; the message names it and its value."""


def _truthy(env: Mapping[str, str], *names: str) -> bool:
    return any(env.get(n, "").strip().lower() in ("1", "true", "yes", "on") for n in names)


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BenchConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise BenchConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BenchConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise BenchConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """
    NIMBUS_BENCH_QUICK=1 (or BENCH_QUICK=1)  the ~2-minute smoke run: fewer calls, 2 s load steps
    NIMBUS_BENCH_SECTIONS     comma list of sections to run (default all: warm, floors, cold_start,
                              throughput, async, autoscale, memory, peer, peer_async); the others
                              are recorded as {"skipped": "not selected"}
    NIMBUS_BENCH_WARM_CALLS   measured sequential calls per warm series (default 2000; quick 500)
    NIMBUS_BENCH_COLD_FUNCTIONS  freshly created functions for the cold start (default 30; quick 10)
    NIMBUS_BENCH_LOAD_S       seconds per throughput step (default 10; quick 2)
    NIMBUS_BENCH_SCALEDOWN_WAIT_S  longest wait for the instances to scale back down (default 90,
                              past the scheduler's 60 s stable window; quick 10)
    NIMBUS_BENCH_WARM_POOL_SIZE  NIMBUS_WARM_POOL_SIZE for the "with pool" cluster when the
                              node-agent honours it (default: unset, the node-agent's own default)
    NIMBUS_BENCH_CACHE        where the peer's npm packages and the chart's venv live
                              (default ~/.cache/nimbus-bench)
    NIMBUS_BENCH_RESULTS      results directory (default bench/results in the checkout)
    NIMBUS_BENCH_KEEP_HOME=1  keep the clusters' temporary NIMBUS_HOME (logs) after the run
    NIMBUS_BENCH_NO_INSTALL=1 never install anything (the peer and the chart are then skipped
                              when missing)
    """

    quick: bool
    sections: tuple[str, ...]
    warm_calls: int
    warmup_calls: int
    cold_functions: int
    load_s: float
    concurrency_levels: tuple[int, ...]
    burst_concurrency: int
    burst_sleep_ms: int
    scaledown_wait_s: float
    warm_pool_size: str
    cache_dir: Path
    results_dir: Path
    keep_home: bool
    allow_install: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> BenchConfig:
        quick = _truthy(env, "NIMBUS_BENCH_QUICK", "BENCH_QUICK")
        raw_sections = env.get("NIMBUS_BENCH_SECTIONS", "").strip()
        if raw_sections:
            chosen = tuple(s.strip() for s in raw_sections.split(",") if s.strip())
            unknown = [s for s in chosen if s not in SECTIONS]
            if unknown:
                raise BenchConfigError(
                    f"NIMBUS_BENCH_SECTIONS={raw_sections!r}: unknown {unknown}; "
                    f"known: {', '.join(SECTIONS)}"
                )
        else:
            chosen = SECTIONS
        home = Path(env.get("HOME", str(Path.home())))
        cache = env.get("NIMBUS_BENCH_CACHE", "").strip() or str(home / ".cache" / "nimbus-bench")
        results = env.get("NIMBUS_BENCH_RESULTS", "").strip() or str(REPO / "bench" / "results")
        return cls(
            quick=quick,
            sections=chosen,
            warm_calls=_int(env, "NIMBUS_BENCH_WARM_CALLS", 500 if quick else 2000),
            warmup_calls=100 if quick else 300,
            cold_functions=_int(env, "NIMBUS_BENCH_COLD_FUNCTIONS", 10 if quick else 30),
            load_s=_float(env, "NIMBUS_BENCH_LOAD_S", 2.0 if quick else 10.0, minimum=0.5),
            concurrency_levels=(1, 8, 32, 64),
            burst_concurrency=50,
            burst_sleep_ms=200,
            scaledown_wait_s=_float(env, "NIMBUS_BENCH_SCALEDOWN_WAIT_S", 10.0 if quick else 90.0),
            warm_pool_size=env.get("NIMBUS_BENCH_WARM_POOL_SIZE", "").strip(),
            cache_dir=Path(cache).expanduser(),
            results_dir=Path(results),
            keep_home=_truthy(env, "NIMBUS_BENCH_KEEP_HOME"),
            allow_install=not _truthy(env, "NIMBUS_BENCH_NO_INSTALL"),
        )

    def wants(self, section: str) -> bool:
        return section in self.sections


def from_os() -> BenchConfig:
    return BenchConfig.from_env(os.environ)
