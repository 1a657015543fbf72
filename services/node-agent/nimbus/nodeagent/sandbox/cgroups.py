"""A sandbox's cgroup, read and written directly in cgroupfs (runc created it at cgroupsPath).

Writing the files ourselves instead of exec'ing `runc update` keeps a cold start's limit change at
tens of microseconds. Both layouts runc supports: cgroup v1 (one hierarchy per controller under
/sys/fs/cgroup/<controller>, also the "hybrid" layout of this kernel) and the unified v2 tree.
Blocking file I/O on small pseudo-files; callers on the event loop go through asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from nimbus.nodeagent.sandbox.oci import CPU_PERIOD_US, cpu_shares

ROOT = Path("/sys/fs/cgroup")


def is_v2(root: Path = ROOT) -> bool:
    """Pure v2 has cgroup.controllers at the top; hybrid hosts keep it under unified/."""
    return (root / "cgroup.controllers").exists()


@dataclass(frozen=True, slots=True)
class Cgroup:
    path: str  # the cgroupsPath given to runc, e.g. /nimbus/node-1/nimbus-node-1-0123456789ab
    v2: bool
    root: Path = ROOT

    def _file(self, controller: str, name: str) -> Path:
        rel = self.path.lstrip("/")
        return self.root / rel / name if self.v2 else self.root / controller / rel / name

    def limit_writes(self, memory_mb: int, cpus: float | None) -> list[tuple[Path, str]]:
        """The files and values that apply these limits, in a safe order. Pure."""
        mem = str(memory_mb * 1024 * 1024)
        quota = max(1000, int(CPU_PERIOD_US * cpus)) if cpus is not None else None
        shares = cpu_shares(memory_mb)
        if self.v2:
            weight = 1 + ((shares - 2) * 9999) // 262_142
            cpu_max = f"{quota if quota is not None else 'max'} {CPU_PERIOD_US}"
            return [
                (self._file("memory", "memory.max"), mem),
                (self._file("cpu", "cpu.weight"), str(weight)),
                (self._file("cpu", "cpu.max"), cpu_max),
            ]
        return [
            (self._file("memory", "memory.limit_in_bytes"), mem),
            (self._file("cpu", "cpu.shares"), str(shares)),
            (self._file("cpu", "cpu.cfs_period_us"), str(CPU_PERIOD_US)),
            (self._file("cpu", "cpu.cfs_quota_us"), str(quota if quota is not None else -1)),
        ]

    def set_limits(self, memory_mb: int, cpus: float | None) -> None:
        for path, value in self.limit_writes(memory_mb, cpus):
            path.write_text(value)

    def lift_cpu_cap(self) -> None:
        """No CPU quota any more (the weight stays): for a sandbox that is being killed, whose
        exit would otherwise crawl at a small function's share of a core. Ignores a gone cgroup."""
        path, value = (
            (self._file("cpu", "cpu.max"), f"max {CPU_PERIOD_US}")
            if self.v2
            else (self._file("cpu", "cpu.cfs_quota_us"), "-1")
        )
        with contextlib.suppress(OSError):
            path.write_text(value)

    def oom_eventfd(self) -> int | None:
        """An eventfd the kernel signals when this cgroup runs out of memory, just before its OOM
        killer picks a victim (v1's memory.oom_control notification); None on v2, whose
        memory.events says it only by a file-modified event, and when the cgroup is gone."""
        if self.v2:
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            control = os.open(
                self._file("memory", "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC
            )
            try:
                self._file("memory", "cgroup.event_control").write_text(f"{efd} {control}")
            finally:
                os.close(control)
        except OSError:
            os.close(efd)
            return None
        return efd

    def oom_kills(self) -> int:
        """How many processes the kernel killed here for exceeding memory (0 if unknown)."""
        name = "memory.events" if self.v2 else "memory.oom_control"
        try:
            text = self._file("memory", name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def memory_bytes(self) -> int | None:
        name = "memory.current" if self.v2 else "memory.usage_in_bytes"
        try:
            return int(self._file("memory", name).read_text())
        except (OSError, ValueError):
            return None

    def open_peak_memory(self) -> int:
        """The file peak_memory_bytes reads, for read_counter: its value is regenerated at every
        read from offset 0, so one fd serves every call's REPORT (open and close cost more than the
        read itself). Raises OSError when the cgroup is gone. v2: memory.peak, which kernels before
        5.19 lack."""
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return os.open(self._file("memory", name), os.O_RDONLY | os.O_CLOEXEC)

    def peak_memory_bytes(self) -> int | None:
        """The high-water mark of the cgroup's memory charge since it was created."""
        try:
            fd = self.open_peak_memory()
        except OSError:
            return None
        try:
            return read_counter(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        """Removes the (empty) cgroup directories; runc delete normally did it already."""
        dirs = (
            [self.root / self.path.lstrip("/")]
            if self.v2
            else [self.root / c / self.path.lstrip("/") for c in _v1_controllers(self.root)]
        )
        for d in dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)


def read_counter(fd: int) -> int | None:
    """The number in a cgroup file opened earlier; None once the cgroup is gone (ENODEV)."""
    try:
        return int(os.pread(fd, 64, 0))
    except (OSError, ValueError):
        return None


def _v1_controllers(root: Path) -> list[str]:
    try:
        return [
            p.name
            for p in root.iterdir()
            if p.is_dir() and not p.is_symlink() and p.name != "unified"
        ]
    except OSError:
        return []


def remove_tree(parent: str, v2: bool, root: Path = ROOT) -> None:
    """Removes leftover empty cgroups under parent (children first), e.g. a dead node's."""
    bases = [root] if v2 else [root / c for c in _v1_controllers(root)]
    for base in bases:
        top = base / parent.lstrip("/")
        if not top.is_dir():
            continue
        for dirpath, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)
