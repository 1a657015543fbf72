"""PID files and checks that a PID is still the process we recorded (never signal a stranger)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import TypeGuard


def read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 else None


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def remove_pid(path: Path, pid: int) -> None:
    """Removes the file only if it still names pid (a newer owner keeps its file)."""
    if read_pid(path) == pid:
        path.unlink(missing_ok=True)


def cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X")


def is_ours(pid: int | None, *needles: str) -> TypeGuard[int]:
    """pid is alive and its command line contains every needle."""
    if pid is None or not alive(pid):
        return False
    line = cmdline(pid)
    return all(n in line for n in needles)


def children(pid: int) -> list[int]:
    """Direct children of pid, from /proc."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            out.append(int(entry.name))
    return out


def kill_group_or_pid(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signals pid's process group when pid leads it (supervisord's children do), else pid."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass
