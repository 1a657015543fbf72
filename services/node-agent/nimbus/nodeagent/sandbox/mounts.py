"""Host-side mounts of the runc driver, through mount(2) directly (no `mount` process per call).

Two node-level mounts, made at agent start and undone at exit (or at the next start after a crash):

    sandbox/code-ro   a read-only, private bind of the code cache. A bind mount copies the flags
                      of its source mount, so every code directory bound from here is read-only
                      from the moment it exists, including in the copies that propagate.
    sandbox/tasks     a bind of itself made `shared`, its own peer group. Each sandbox's /var/task
                      is a `rslave` bind of tasks/<id>/; binding code-ro/<sha256> onto
                      tasks/<id>/ later propagates into that one sandbox only.

Blocking syscalls; callers on the event loop go through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
from pathlib import Path

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source: str | None, target: str, flags: int, fstype: str | None = None) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            None,
        ),
        f"mount {source} on {target}",
    )


def umount(target: str) -> bool:
    """Detaches the top mount at target; False when nothing was mounted there."""
    if _libc.umount2(target.encode(), MNT_DETACH) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOENT):
        return False
    raise OSError(err, f"umount {target}: {os.strerror(err)}")


def mount_points(root: Path | str) -> list[str]:
    """Mount points at or under root, deepest first (the order to unmount them)."""
    prefix = os.path.realpath(root)
    found: list[str] = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return sorted(found, key=lambda p: (-p.count("/"), p))


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def unmount_all(root: Path | str) -> int:
    """Unmounts everything at or under root, stacked mounts included; how many."""
    count = 0
    for _ in range(64):  # bounded: a stacked mount needs one pass per layer
        points = mount_points(root)
        if not points:
            break
        for point in points:
            with contextlib.suppress(OSError):
                count += umount(point)
    return count


def make_readonly_view(source: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    mount(str(source), str(target), MS_BIND)
    mount(None, str(target), MS_PRIVATE)
    mount(None, str(target), MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def make_shared_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    mount(str(path), str(path), MS_BIND)
    # Private first, so the new peer group is ours alone even on hosts whose / is shared.
    mount(None, str(path), MS_PRIVATE)
    mount(None, str(path), MS_SHARED)


def bind(source: Path, target: Path) -> None:
    mount(str(source), str(target), MS_BIND)
