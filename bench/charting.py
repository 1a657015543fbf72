"""Draws the PNG chart: picks an interpreter that has matplotlib (this one, else a venv of its own
in the bench cache, created once and said so) and runs bench/chart.py in it."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.procs import terminate
from bench.report import dig

CHART = Path(__file__).with_name("chart.py")
_INSTALL_TIMEOUT_S = 600.0


def chart_data(results: dict[str, Any]) -> dict[str, Any]:
    """The few series the chart draws, from the results."""
    s = results["sections"]
    latency: dict[str, Any] = {}
    for label, path in (
        ("bare gRPC", ("floors", "grpc_bare")),
        ("gRPC via Envoy", ("floors", "grpc_envoy")),
        ("plain HTTP in process", ("floors", "http_inprocess")),
        ("Nimbus REST", ("warm", "rest", "e2e")),
        ("Nimbus gRPC", ("warm", "grpc", "e2e")),
        ("peer warm", ("peer", "warm")),
    ):
        summary = dig(s, *path)
        if isinstance(summary, dict) and summary.get("p50_ms") is not None:
            latency[label] = {k: summary.get(k) for k in ("p50_ms", "p90_ms", "p99_ms")}
    levels = [
        {k: lv.get(k) for k in ("concurrency", "rps", "p50_ms", "p99_ms")}
        for lv in (dig(s, "throughput", "levels") or [])
        if lv.get("calls")
    ]
    head = results["headline"]
    return {
        "title": (
            f"Nimbus bench {results['meta'].get('started_at')} ({results['meta'].get('machine')})"
        ),
        "latency": latency,
        "throughput": levels,
        "baselines_rps": {
            "plain HTTP in process c=32": head.get("http_floor_rps_c32"),
            "peer c=32": dig(head, "peer", "rps_c32"),
        },
    }


async def _run(argv: list[str], timeout_s: float) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        await terminate(proc)
        return -1, f"timed out after {timeout_s:g} s"
    return proc.returncode or 0, out.decode(errors="replace")


async def _python_with_matplotlib(cfg: BenchConfig, log: Callable[[str], None]) -> str:
    code, _ = await _run([sys.executable, "-c", "import matplotlib"], 60)
    if code == 0:
        return sys.executable
    venv = cfg.cache_dir / "chart-venv"
    py = venv / "bin" / "python"
    if py.exists() and (await _run([str(py), "-c", "import matplotlib"], 60))[0] == 0:
        return str(py)
    if not cfg.allow_install:
        raise RuntimeError("matplotlib is not installed and NIMBUS_BENCH_NO_INSTALL is set")
    log(
        f"bench: chart: matplotlib is not in {sys.executable}'s "
        f"environment; pip install matplotlib into {venv} (once)"
    )
    code, out = await _run([sys.executable, "-m", "venv", "--clear", str(venv)], 120)
    if code != 0:
        raise RuntimeError(f"python -m venv {venv} failed: {out[-500:]}")
    code, out = await _run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", "matplotlib"],
        _INSTALL_TIMEOUT_S,
    )
    if code != 0:
        raise RuntimeError(f"pip install matplotlib failed: {out[-500:]}")
    return str(py)


async def draw(
    results: dict[str, Any], out: Path, cfg: BenchConfig, log: Callable[[str], None]
) -> str:
    """Writes the PNG; returns the interpreter used. Raises RuntimeError when it cannot."""
    python = await _python_with_matplotlib(cfg, log)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(chart_data(results), f)
        data_path = f.name
    try:
        code, text = await _run([python, str(CHART), data_path, str(out)], 120)
    finally:
        Path(data_path).unlink(missing_ok=True)
    if code != 0:
        raise RuntimeError(f"chart.py failed: {text[-800:]}")
    return python
