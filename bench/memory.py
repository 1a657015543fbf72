"""Memory of processes, from /proc: RSS per service,
the instances of a node-agent, their cgroups."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def parse_status_kb(text: str, field: str = "VmRSS") -> int | None:
    """A "Name:  123 kB" field of /proc/<pid>/status, in kB."""
    for line in text.splitlines():
        if line.startswith(field + ":"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    return None


def rss_mb(pid: int) -> float | None:
    try:
        kb = parse_status_kb((PROC / str(pid) / "status").read_text())
    except OSError:
        return None
    return round(kb / 1024, 1) if kb is not None else None


def children(pid: int, marker: str = "") -> list[int]:
    """PIDs whose parent is pid (and whose command line contains marker)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # comm may contain spaces and parentheses: the ppid is the 2nd field after the last ')'.
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            if marker and marker not in (entry / "cmdline").read_bytes().decode(errors="replace"):
                continue
        except (OSError, ValueError, IndexError):
            continue
        found.append(int(entry.name))
    return sorted(found)


def memory_cgroup(pid: int) -> str | None:
    """The process's memory cgroup path (v1 "memory" controller, else the v2 unified one)."""
    try:
        lines = (PROC / str(pid) / "cgroup").read_text().splitlines()
    except OSError:
        return None
    unified = None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return f"memory{path}"
        if controllers == "":
            unified = path
    return f"unified{unified}" if unified is not None else None


def cgroup_usage_mb(cgroup: str) -> float | None:
    kind, _, path = cgroup.partition("/")
    candidates = (
        [CGROUP_ROOT / "memory" / path / "memory.usage_in_bytes"]
        if kind == "memory"
        else [
            CGROUP_ROOT / path / "memory.current",
            CGROUP_ROOT / "unified" / path / "memory.current",
        ]
    )
    for f in candidates:
        try:
            return round(int(f.read_text().strip()) / (1024 * 1024), 1)
        except (OSError, ValueError):
            continue
    return None


def snapshot(pids: Mapping[str, int]) -> dict[str, float | None]:
    return {name: rss_mb(pid) for name, pid in pids.items()}


async def sample_peak(
    pids: Callable[[], Mapping[str, int]],
    stop: asyncio.Event,
    interval_s: float = 0.25,
    bound_s: float = 600.0,
) -> dict[str, float | None]:
    """The highest RSS seen per name until stop is set (at most bound_s)."""
    peak: dict[str, float | None] = {}
    deadline = time.monotonic() + bound_s
    while True:
        for name, mb in snapshot(pids()).items():
            old = peak.get(name)
            peak[name] = mb if old is None else (old if mb is None else max(old, mb))
        if stop.is_set() or time.monotonic() > deadline:
            return peak
        try:
            async with asyncio.timeout(interval_s):
                await stop.wait()
        except TimeoutError:
            pass
