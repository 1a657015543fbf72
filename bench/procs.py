"""Child processes the bench starts: free ports, waiting for a listener, stopping by PID only."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


async def wait_port(
    port: int, timeout_s: float, proc: asyncio.subprocess.Process | None = None
) -> None:
    """Until something accepts on HOST:port; raises TimeoutError, or RuntimeError if proc exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _, writer = await asyncio.open_connection(HOST, port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            pass
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(
                f"process {proc.pid} exited with {proc.returncode} before listening on {port}"
            )
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout_s:g} s")
        await asyncio.sleep(0.05)


async def terminate(
    proc: asyncio.subprocess.Process, grace_s: float = 5.0, *, group: bool = False
) -> None:
    """SIGTERM, then SIGKILL after grace_s, to this child only (or to the process group it leads,
    when it was started with start_new_session=True and group is set). Idempotent."""
    if proc.returncode is not None:
        return
    _signal(proc.pid, signal.SIGTERM, group)
    try:
        async with asyncio.timeout(grace_s):
            await proc.wait()
    except TimeoutError:
        _signal(proc.pid, signal.SIGKILL, group)
        try:
            async with asyncio.timeout(grace_s):
                await proc.wait()
        except TimeoutError:
            pass
    if group:
        # Whatever the leader left behind in its group (serverless-offline's python workers).
        _signal(proc.pid, signal.SIGKILL, True)


def _signal(pid: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
