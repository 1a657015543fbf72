"""Waits until every program of a cluster passes its health check, or names those that did not."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from nimbus.common.config import CONFIG_ERROR_PREFIX

if TYPE_CHECKING:
    from nimbus.cluster.cluster import LocalCluster

POLL_S = 0.1
# How often the log of a program that is not ready yet is read for a configuration error.
EXIT_CHECK_S = 0.5
TAIL_LINES = 5


def _tail(path: Path, n: int = TAIL_LINES) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            return [line.rstrip() for line in deque(f, maxlen=n)]
    except OSError:
        return []


def log_offsets(cluster: LocalCluster) -> dict[str, int]:
    """Where each program's log ends before this start: what follows is this run's."""
    offsets = {}
    for name in cluster.names:
        try:
            offsets[name] = cluster.log_path(name).stat().st_size
        except OSError:
            offsets[name] = 0
    return offsets


def _said_misconfigured(cluster: LocalCluster, name: str, offset: int) -> bool:
    """Whether the program printed nimbus.common.service's configuration-error line in this run.
    (Its exit status, 78, is no help here: supervisord forgets it for a program that exits within
    startsecs.)"""
    try:
        with open(cluster.log_path(name), "rb") as f:
            f.seek(offset)
            text = f.read()
    except OSError:
        return False
    marker = CONFIG_ERROR_PREFIX.encode()
    return text.startswith(marker) or b"\n" + marker in text


async def wait_ready(
    cluster: LocalCluster,
    deadline: float,
    timeout_s: float,
    say: Callable[[str], None],
    offsets: dict[str, int] | None = None,
) -> None:
    """Polls every program until ready; raises ClusterError naming the rest, their state and log.
    offsets (log_offsets() before the programs started) lets it stop at once for a program that
    exited on a configuration error, which restarting cannot mend."""
    from nimbus.cluster.cluster import ClusterError

    started = time.monotonic()
    pending = set(cluster.names)
    # Programs that exited saying they cannot start as configured: restarting them cannot help.
    misconfigured: list[str] = []

    async def one(name: str) -> None:
        next_exit_check = time.monotonic() + EXIT_CHECK_S
        while not await cluster.ready(name):
            if (
                time.monotonic() > deadline
                or cluster.supervisord_exited() is not None
                or misconfigured
            ):
                return
            if offsets is not None and time.monotonic() > next_exit_check:
                next_exit_check = time.monotonic() + EXIT_CHECK_S
                if await asyncio.to_thread(
                    _said_misconfigured, cluster, name, offsets.get(name, 0)
                ):
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
        lines = [f"configuration error: {', '.join(misconfigured)} cannot start as configured"]
    elif cluster.supervisord_exited() is not None:
        lines = [
            f"supervisord exited (see {cluster.layout.logs}/supervisord.log); not ready: {names}"
        ]
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
