"""The peer, run beside Nimbus: the Serverless Framework's serverless-offline serving the same
Python handler over HTTP (npm serverless@3 + serverless-offline@13.9.0, offline, no account).

Its npm packages are installed once into a cache directory outside the checkout. The handler runs
on the same interpreter Nimbus's node-agent uses, put first on PATH as `python3`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.functions import NOOP_SOURCE, unique_noop
from bench.load import run_job
from bench.loadgen import Job
from bench.procs import HOST, free_port, terminate, wait_port
from bench.stats import summarize_us

NAME = "serverless-offline"
PACKAGES = ("serverless@3", "serverless-offline@13.9.0")
_INSTALL_TIMEOUT_S = 600.0
_START_TIMEOUT_S = 90.0


class PeerUnavailable(RuntimeError):
    """The peer cannot be installed or started here; the message says what was tried."""


def service_definition(http_port: int, lambda_port: int, cold_names: list[str]) -> dict[str, Any]:
    """serverless.json: one warm no-op function plus one function per cold
    start, each on POST /<name>."""

    def fn(module: str, name: str) -> dict[str, Any]:
        return {
            "handler": f"{module}.handler",
            "events": [{"httpApi": {"path": f"/{name}", "method": "post"}}],
        }

    functions = {"noop": fn("main", "noop")}
    for name in cold_names:
        functions[name] = fn(name, name)
    return {
        "service": "nimbus-bench-peer",
        "frameworkVersion": "3",
        "provider": {"name": "aws", "runtime": "python3.11", "region": "us-east-1"},
        "plugins": ["serverless-offline"],
        "custom": {
            "serverless-offline": {
                "host": HOST,
                "httpPort": http_port,
                "lambdaPort": lambda_port,
                "noPrependStageInUrl": True,
            }
        },
        "functions": functions,
    }


async def ensure_installed(cfg: BenchConfig, log: Callable[[str], None]) -> Path:
    """The serverless executable in cfg.cache_dir/peer, installed by npm on first use."""
    root = cfg.cache_dir / "peer"
    exe = root / "node_modules" / ".bin" / "serverless"
    if exe.exists():
        return exe
    if not cfg.allow_install:
        raise PeerUnavailable(f"{exe} is missing and NIMBUS_BENCH_NO_INSTALL is set")
    npm = shutil.which("npm")
    if npm is None:
        raise PeerUnavailable("npm is not on PATH (Debian package npm)")
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text('{"name": "nimbus-bench-peer", "private": true}\n')
    log(f"bench: peer: npm install {' '.join(PACKAGES)} into {root} (once; about a minute)")
    proc = await asyncio.create_subprocess_exec(
        npm,
        "install",
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        *PACKAGES,
        cwd=str(root),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(_INSTALL_TIMEOUT_S):
            output, _ = await proc.communicate()
    except TimeoutError:
        await terminate(proc)
        raise PeerUnavailable(
            f"npm install did not finish within {_INSTALL_TIMEOUT_S:g} s"
        ) from None
    if proc.returncode != 0 or not exe.exists():
        raise PeerUnavailable(
            f"npm install failed ({proc.returncode}): {output.decode(errors='replace')[-800:]}"
        )
    return exe


def _python_bin(tmp: Path, python: str) -> Path:
    """A directory holding `python3` -> python, for PATH."""
    bindir = tmp / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(python)
    return bindir


async def measure(cfg: BenchConfig, python: str, log: Callable[[str], None]) -> dict[str, Any]:
    """{"name", "version", "warm": summary, "cold_start": summary, ...}; raises PeerUnavailable."""
    exe = await ensure_installed(cfg, log)
    cold_names = [f"cold_{i}" for i in range(cfg.cold_functions)]
    http_port, lambda_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-peer-") as tmp_name:
        tmp = Path(tmp_name)
        svc = tmp / "svc"
        svc.mkdir()
        (svc / "main.py").write_text(NOOP_SOURCE)
        for i, name in enumerate(cold_names):
            (svc / f"{name}.py").write_text(unique_noop(i))
        (svc / "serverless.json").write_text(
            json.dumps(service_definition(http_port, lambda_port, cold_names))
        )
        env = {
            **os.environ,
            "SLS_TELEMETRY_DISABLED": "1",
            "SLS_NOTIFICATIONS_MODE": "off",
            "PATH": f"{_python_bin(tmp, python)}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        env.pop("VIRTUAL_ENV", None)
        log_path = tmp / "serverless.log"
        with log_path.open("wb") as log_file:
            t0 = time.monotonic()
            proc = await asyncio.create_subprocess_exec(
                str(exe),
                "offline",
                "start",
                cwd=str(svc),
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                try:
                    await wait_port(http_port, _START_TIMEOUT_S, proc)
                except (TimeoutError, RuntimeError) as err:
                    raise PeerUnavailable(
                        f"serverless offline did not start: {err}; "
                        f"log: {log_path.read_text()[-800:]}"
                    ) from None
                started_s = time.monotonic() - t0
                log(
                    "bench: peer: serverless-offline listening "
                    f"after {started_s:.1f} s; cold starts"
                )
                cold = await run_job(
                    Job(
                        kind="http",
                        host=HOST,
                        port=http_port,
                        paths=tuple(f"/{n}" for n in cold_names),
                        count=len(cold_names),
                        duration_s=300,
                        call_timeout_s=30,
                    )
                )
                log("bench: peer: warm calls")
                warm = await run_job(
                    Job(
                        kind="http",
                        host=HOST,
                        port=http_port,
                        paths=("/noop",),
                        count=cfg.warm_calls,
                        duration_s=120,
                        warmup_calls=cfg.warmup_calls,
                        warmup_s=30,
                    )
                )
                loaded = await run_job(
                    Job(
                        kind="http",
                        host=HOST,
                        port=http_port,
                        paths=("/noop",),
                        concurrency=32,
                        count=10**7,
                        duration_s=cfg.load_s,
                        warmup_calls=320,
                        warmup_s=15,
                    )
                )
            finally:
                await terminate(proc, group=True)
    return {
        "name": NAME,
        "packages": list(PACKAGES),
        "python": python,
        "startup_s": round(started_s, 2),
        "warm": {**summarize_us(warm.ok_lat_us()), "errors": warm.errors},
        "cold_start": {
            **summarize_us(cold.ok_lat_us()),
            "errors": cold.errors,
            "note": (
                "first HTTP call of each function: "
                "spawns its Python process and imports the handler"
            ),
        },
        "throughput_c32": {
            **summarize_us(loaded.ok_lat_us()),
            "errors": loaded.errors,
            "rps": loaded.rps(),
        },
    }
