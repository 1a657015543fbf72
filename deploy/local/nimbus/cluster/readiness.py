"""Waits until every program of a cluster passes its health check, or names those that did not."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING

from nimbus.common.config import EXIT_CONFIG

if TYPE_CHECKING:
    from nimbus.cluster.cluster import LocalCluster

POLL_S = 0.1
# How often a program that is not ready yet is asked for its last exit status.
EXIT_CHECK_S = 0.5
TAIL_LINES = 5


def _tail(path, n: int = TAIL_LINES) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip() for line in deque(f, maxlen=n)]
    except OSError:
        return []


async def _exited_misconfigured(cluster: LocalCluster, name: str) -> bool:
    try:
        info = await asyncio.to_thread(cluster.info, name)
    except Exception:  # supervisord busy or gone: the deadline still applies
        return False
    return info.get("exitstatus") == EXIT_CONFIG and info.get("statename") != "RUNNING"


async def wait_ready(cluster: LocalCluster, deadline: float, timeout_s: float, say) -> None:
    """Polls every program until ready; raises ClusterError naming the rest, their state and log."""
    from nimbus.cluster.cluster import ClusterError

    started = time.monotonic()
    pending = set(cluster.names)
    # Programs that exited saying they cannot start as configured: restarting them cannot help.
    misconfigured: list[str] = []

    async def one(name: str) -> None:
        next_exit_check = time.monotonic() + EXIT_CHECK_S
        while not await cluster.ready(name):
            if time.monotonic() > deadline or cluster.supervisord_exited() is not None or misconfigured:
                return
            if time.monotonic() > next_exit_check:
                next_exit_check = time.monotonic() + EXIT_CHECK_S
                if await _exited_misconfigured(cluster, name):
                    misconfigured.append(name)
                    return
            await asyncio.sleep(POLL_S)
        pending.discard(name)
        say(f"nimbus: {name} ready after {time.monotonic() - started:.1f} s")

    await asyncio.gather(*(one(n) for n in cluster.names))
    if not pending:
        return
    names = ", ".join(n for n in cluster.names if n in pending)
    lines = [f"not ready after {timeout_s:g} s: {names}"]
    if misconfigured:
        pending = set(misconfigured)
        lines = [f"configuration error (exit status {EXIT_CONFIG}): {', '.join(misconfigured)}"]
    elif cluster.supervisord_exited() is not None:
        lines = [f"supervisord exited (see {cluster.layout.logs}/supervisord.log); not ready: {names}"]
    for name in cluster.names:
        if name not in pending:
            continue
        try:
            state = cluster.state(name)
        except Exception:  # supervisord itself gone
            state = "unknown"
        lines.append(f"  {name} ({state}), log {cluster.log_path(name)}:")
        lines += [f"    | {line}" for line in _tail(cluster.log_path(name))]
    raise ClusterError("\n".join(lines))
