"""The OCI runtime config (config.json) of one sandbox. Pure: a dataclass in, a dict out.

What a function sees: a read-only root assembled from the host's system directories (bind-mounted
read-only, nosuid, nodev), a minimal /etc of selected files (no shadow), the shims at /var/runtime,
its code at /var/task, the agent's socket directory at /run/nimbus and a private size-limited
tmpfs at /tmp, the one writable place (no /dev/shm, as on Lambda). New pid, mount, ipc, uts,
network and cgroup namespaces; the network namespace has only loopback. A non-root uid,
no_new_privileges, no capabilities at all, and a seccomp profile.

/var/task starts as an empty per-sandbox directory mounted `rslave`: the host later mounts the
function's code onto its source (mounts.py), and the mount propagates in. That is what lets a
sandbox boot before anyone knows which function it will run, without it ever seeing other code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

TASK_ROOT = "/var/task"
RUNTIME_ROOT = "/var/runtime"
SOCKET_DIR = "/run/nimbus"
# Mount points the read-only rootfs skeleton must already contain.
MOUNT_POINTS = ("proc", "dev", "usr", "etc", "tmp", "var/task", "var/runtime", "run/nimbus")
CPU_PERIOD_US = 100_000

_RO_BIND = ["rbind", "ro", "nosuid", "nodev"]


@dataclass(frozen=True, slots=True)
class BundleSpec:
    args: Sequence[str]
    env: Mapping[str, str]
    uid: int
    gid: int
    rootfs: str
    etc_dir: str
    runtime_dir: str
    task_dir: str
    socket_dir: str
    tmp_mb: int
    memory_mb: int
    pids: int
    cpu_shares: int
    cgroups_path: str
    seccomp: Mapping[str, Any]
    # Host system directories bind-mounted read-only at the same path (besides /usr).
    system_binds: Sequence[str] = field(default_factory=tuple)
    hostname: str = "sandbox"
    # A host directory bound read-write at /tmp instead of the private tmpfs (a package's
    # compile writes its output there), and a hard CPU cap in µs per period (None: none).
    tmp_dir: str | None = None
    cpu_quota_us: int | None = None


def config(b: BundleSpec) -> dict[str, Any]:
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": b.uid, "gid": b.gid, "additionalGids": []},
            "args": list(b.args),
            "env": [f"{k}={v}" for k, v in b.env.items()],
            "cwd": "/tmp",
            "capabilities": {
                k: [] for k in ("bounding", "effective", "inheritable", "permitted", "ambient")
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
            ],
            "noNewPrivileges": True,
            # Under host memory pressure, a function goes before the platform.
            "oomScoreAdj": 500,
        },
        "root": {"path": b.rootfs, "readonly": True},
        "hostname": b.hostname,
        "mounts": _mounts(b),
        "linux": {
            "namespaces": [
                {"type": t} for t in ("pid", "network", "ipc", "uts", "mount", "cgroup")
            ],
            "cgroupsPath": b.cgroups_path,
            "resources": {
                "devices": [{"allow": False, "access": "rwm"}],
                "memory": {"limit": b.memory_mb * 1024 * 1024},
                "pids": {"limit": b.pids},
                "cpu": {"shares": b.cpu_shares}
                | (
                    {"quota": b.cpu_quota_us, "period": CPU_PERIOD_US}
                    if b.cpu_quota_us is not None
                    else {}
                ),
            },
            "seccomp": dict(b.seccomp),
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/proc/sysrq-trigger",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys"],
        },
    }


def _mounts(b: BundleSpec) -> list[dict[str, Any]]:
    def bind(source: str, dest: str, options: list[str]) -> dict[str, Any]:
        return {"destination": dest, "type": "bind", "source": source, "options": options}

    return [
        {
            "destination": "/proc",
            "type": "proc",
            "source": "proc",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "noexec", "strictatime", "mode=755", "size=64k"],
        },
        bind("/usr", "/usr", _RO_BIND),
        *(bind(d, d, _RO_BIND) for d in b.system_binds),
        bind(b.etc_dir, "/etc", _RO_BIND),
        bind(b.runtime_dir, RUNTIME_ROOT, _RO_BIND),
        bind(b.task_dir, TASK_ROOT, ["bind", "ro", "nosuid", "nodev", "rslave"]),
        *(
            [bind(b.socket_dir, SOCKET_DIR, ["bind", "ro", "nosuid", "nodev", "noexec"])]
            if b.socket_dir
            else []
        ),
        bind(b.tmp_dir, "/tmp", ["bind", "rw", "nosuid", "nodev", "noexec"])
        if b.tmp_dir
        else {
            "destination": "/tmp",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "mode=1777", f"size={b.tmp_mb}m"],
        },
    ]


def cpu_shares(memory_mb: int) -> int:
    """cgroup v1 cpu.shares in proportion to memory: 1024 (one core's worth) at 1769 MB."""
    return max(2, min(262_144, round(1024 * memory_mb / 1769)))
