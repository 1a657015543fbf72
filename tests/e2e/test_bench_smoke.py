"""The quick bench runs once per test run, so `make bench` cannot rot. Timing never fails it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_bench_runs_and_reports_the_headline_keys(tmp_path):
    env = {
        **os.environ,
        "NIMBUS_BENCH_QUICK": "1",
        "NIMBUS_BENCH_RESULTS": str(tmp_path),
        # No npm or extra venv installs from the test suite: a missing peer is recorded, not fatal.
        "NIMBUS_BENCH_NO_INSTALL": "1",
    }
    run = subprocess.run(
        [sys.executable, "-m", "bench.run"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "latest.json").read_text())
    headline = results["headline"]
    for key in (
        "warm_overhead_p50_ms",
        "grpc_floor_p50_ms",
        "cold_start_p50_ms",
        "sync_throughput_rps",
    ):
        assert key in headline, key
    assert headline["warm_overhead_p50_ms"] > 0 and headline["grpc_floor_p50_ms"] > 0
