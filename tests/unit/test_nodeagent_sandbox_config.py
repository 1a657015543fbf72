"""What a runc sandbox is made of, checked on the generated data (no runc needed): config.json,
the seccomp profile, cgroup files and the minimal /etc."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from nimbus.nodeagent.sandbox import cgroups, oci, rootfs, seccomp

pytestmark = pytest.mark.timeout(10)


def bundle(**kw: Any) -> dict[str, Any]:
    spec = oci.BundleSpec(
        args=["/usr/bin/python3.11", "-s", "/var/runtime/python/bootstrap.py"],
        env={"PATH": "/usr/bin", "NIMBUS_SOCKET": "/run/nimbus/sock"},
        uid=10001,
        gid=10001,
        rootfs="/n/rootfs",
        etc_dir="/n/etc",
        runtime_dir="/n/runtime",
        task_dir="/n/tasks/abc",
        socket_dir="/n/sockets/abc",
        tmp_mb=512,
        memory_mb=128,
        pids=128,
        cpu_shares=74,
        cgroups_path="/nimbus/node-1/nimbus-node-1-abc",
        seccomp=seccomp.profile(allow_listen=False),
        **kw,
    )
    return oci.config(spec)


def mounts_by_destination(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in cfg["mounts"]}


def test_process_is_unprivileged() -> None:
    proc = bundle()["process"]
    assert proc["user"]["uid"] != 0 and proc["user"]["gid"] != 0
    assert proc["noNewPrivileges"] is True
    assert all(caps == [] for caps in proc["capabilities"].values())
    assert proc["terminal"] is False


def test_namespaces_and_limits() -> None:
    linux = bundle()["linux"]
    assert {n["type"] for n in linux["namespaces"]} == {
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    }
    assert all("path" not in n for n in linux["namespaces"])  # all new, none shared with the host
    res = linux["resources"]
    assert res["memory"]["limit"] == 128 * 1024 * 1024 and res["pids"]["limit"] == 128
    assert res["devices"] == [{"allow": False, "access": "rwm"}]
    assert linux["cgroupsPath"] == "/nimbus/node-1/nimbus-node-1-abc"


def test_file_system_is_read_only_but_tmp() -> None:
    cfg = bundle(system_binds=["/lib32"])
    assert cfg["root"]["readonly"] is True
    mounts = mounts_by_destination(cfg)
    for dest in ("/usr", "/lib32", "/etc", "/var/runtime", "/var/task", "/run/nimbus"):
        assert mounts[dest]["type"] == "bind" and "ro" in mounts[dest]["options"], dest
        assert "nosuid" in mounts[dest]["options"] and "nodev" in mounts[dest]["options"]
    assert (
        mounts["/var/task"]["source"] == "/n/tasks/abc"
        and "rslave" in mounts["/var/task"]["options"]
    )
    assert mounts["/etc"]["source"] == "/n/etc"  # never the host's /etc
    assert mounts["/tmp"]["type"] == "tmpfs" and "size=512m" in mounts["/tmp"]["options"]
    writable = [
        d for d, m in mounts.items() if "ro" not in m.get("options", []) and m["type"] != "proc"
    ]
    assert sorted(writable) == ["/dev", "/tmp"]  # /dev is root's (0755): only /tmp takes writes
    assert "/dev/shm" not in mounts and "/sys" not in mounts


def test_seccomp_allowlist() -> None:
    closed, open_ = seccomp.profile(allow_listen=False), seccomp.profile(allow_listen=True)
    assert closed["defaultAction"] == "SCMP_ACT_ERRNO" and closed["architectures"] == [
        "SCMP_ARCH_X86_64"
    ]
    allowed = set(closed["syscalls"][0]["names"])
    assert "listen" not in allowed and "listen" in set(open_["syscalls"][0]["names"])
    for dangerous in (
        "mount",
        "unshare",
        "setns",
        "ptrace",
        "bpf",
        "keyctl",
        "io_uring_setup",
        "kexec_load",
        "init_module",
        "perf_event_open",
        "userfaultfd",
        "open_by_handle_at",
        "clone3",
    ):
        assert dangerous not in allowed, dangerous
    for needed in ("read", "write", "mmap", "futex", "execve", "connect", "wait4"):
        assert needed in allowed
    # socket and socketpair only for the families a function uses (netlink: routing only).
    assert "socket" not in allowed and "socketpair" not in allowed
    families = [
        tuple((a["index"], a["value"], a["op"]) for a in r["args"])
        for r in closed["syscalls"]
        if r["names"] == ["socket"]
    ]
    eq = "SCMP_CMP_EQ"
    assert sorted(families) == [
        ((0, 1, eq),),
        ((0, 2, eq),),
        ((0, 10, eq),),
        ((0, 16, eq), (2, 0, eq)),
    ]
    pair = next(r for r in closed["syscalls"] if r["names"] == ["socketpair"])
    assert pair["args"] == [{"index": 0, "value": 1, "op": eq}]
    clone = next(r for r in closed["syscalls"] if r["names"] == ["clone"])
    assert (
        clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" and clone["args"][0]["value"] & 0x10000000
    )  # CLONE_NEWUSER


@pytest.mark.parametrize(("memory_mb", "shares"), [(128, 74), (1769, 1024), (10240, 5928), (1, 2)])
def test_cpu_shares(memory_mb: int, shares: int) -> None:
    assert oci.cpu_shares(memory_mb) == shares


def test_cgroup_v1_limit_files() -> None:
    cg = cgroups.Cgroup("/nimbus/n/c", v2=False, root=Path("/cg"))
    assert cg.limit_writes(256, 256 / 1769) == [
        (Path("/cg/memory/nimbus/n/c/memory.limit_in_bytes"), str(256 * 1024 * 1024)),
        (Path("/cg/cpu/nimbus/n/c/cpu.shares"), "148"),
        (Path("/cg/cpu/nimbus/n/c/cpu.cfs_period_us"), "100000"),
        (Path("/cg/cpu/nimbus/n/c/cpu.cfs_quota_us"), "14471"),
    ]
    assert cg.limit_writes(128, None)[-1] == (Path("/cg/cpu/nimbus/n/c/cpu.cfs_quota_us"), "-1")


def test_cgroup_v2_limit_files() -> None:
    cg = cgroups.Cgroup("/nimbus/n/c", v2=True, root=Path("/cg"))
    assert cg.limit_writes(1769, 1.0) == [
        (Path("/cg/nimbus/n/c/memory.max"), str(1769 * 1024 * 1024)),
        (Path("/cg/nimbus/n/c/cpu.weight"), "39"),
        (Path("/cg/nimbus/n/c/cpu.max"), "100000 100000"),
    ]


def test_oom_kills_are_read_from_the_cgroup(tmp_path: Path) -> None:
    leaf = tmp_path / "memory" / "nimbus" / "c"
    leaf.mkdir(parents=True)
    (leaf / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    assert cgroups.Cgroup("/nimbus/c", v2=False, root=tmp_path).oom_kills() == 2
    assert cgroups.Cgroup("/nimbus/missing", v2=False, root=tmp_path).oom_kills() == 0


@pytest.mark.parametrize(
    ("v2", "rel"),
    [(False, "memory/nimbus/c/memory.max_usage_in_bytes"), (True, "nimbus/c/memory.peak")],
)
def test_peak_memory_is_read_again_through_one_kept_fd(tmp_path: Path, v2: bool, rel: str) -> None:
    (tmp_path / rel).parent.mkdir(parents=True)
    (tmp_path / rel).write_text("4096\n")
    cg = cgroups.Cgroup("/nimbus/c", v2=v2, root=tmp_path)
    assert cg.peak_memory_bytes() == 4096
    fd = cg.open_peak_memory()
    try:
        assert cgroups.read_counter(fd) == 4096
        (tmp_path / rel).write_text("123456789\n")  # the kernel regenerates the file at every read
        assert cgroups.read_counter(fd) == cgroups.read_counter(fd) == 123456789
        (tmp_path / rel).write_text("")
        assert cgroups.read_counter(fd) is None
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        cgroups.Cgroup("/nimbus/missing", v2=v2, root=tmp_path).open_peak_memory()
    assert cgroups.Cgroup("/nimbus/missing", v2=v2, root=tmp_path).peak_memory_bytes() is None


def test_minimal_etc_has_no_secrets(tmp_path: Path) -> None:
    host = tmp_path / "host-etc"
    (host / "ssl" / "certs").mkdir(parents=True)
    (host / "ssl" / "private").mkdir()
    (host / "ssl" / "private" / "key.pem").write_text("secret")
    (host / "ssl" / "certs" / "ca.pem").write_text("public")
    (host / "shadow").write_text("root:$6$secret")
    (host / "ld.so.cache").write_text("cache")
    (host / "passwd").write_text("alice:x:1000:1000::/home/alice:/bin/bash\n")
    etc = tmp_path / "etc"
    rootfs.build_etc(etc, range(10001, 10004), host_etc=host)
    assert not (etc / "shadow").exists() and not (etc / "ssl" / "private").exists()
    assert (etc / "ssl" / "certs" / "ca.pem").read_text() == "public"
    assert (etc / "ld.so.cache").exists()
    passwd = (etc / "passwd").read_text()
    assert "alice" not in passwd
    # Every sandbox uid of the node is a user and a group of its own.
    for uid in (10001, 10002, 10003):
        assert f"sbx_user{uid}:x:{uid}:{uid}::/tmp:" in passwd
        assert f"sbx_user{uid}:x:{uid}:\n" in (etc / "group").read_text()
    assert "10004" not in passwd


def test_rootfs_skeleton(tmp_path: Path) -> None:
    host = tmp_path / "host"
    (host / "usr" / "bin").mkdir(parents=True)
    (host / "bin").symlink_to("usr/bin")
    (host / "lib64").mkdir()
    skeleton = tmp_path / "rootfs"
    binds = rootfs.build_rootfs(skeleton, host_root=host)
    assert binds == ["/lib64"]
    assert (skeleton / "bin").is_symlink() and str((skeleton / "bin").readlink()) == "usr/bin"
    assert all((skeleton / p).is_dir() for p in oci.MOUNT_POINTS)
    assert (skeleton / "tmp").stat().st_mode & 0o1777 == 0o1777  # runc gives the tmpfs this mode


def test_compiled_files_come_back_only_for_real_sources(tmp_path: Path) -> None:
    """What a package's compile (the tenant's) wrote is copied into the tree only as regular .pyc
    files named for a source there, into __pycache__ dirs the agent makes; never via a symlink."""
    from nimbus.nodeagent.sandbox.runc import _harvest_pyc

    tree, prefix = tmp_path / "tree", tmp_path / "out"
    (tree / "pkg").mkdir(parents=True)
    (tree / "app.py").write_text("")
    (tree / "pkg" / "mod.py").write_text("")
    (prefix / "pkg").mkdir(parents=True)
    (prefix / "app.cpython-311.pyc").write_bytes(b"app")
    (prefix / "pkg" / "mod.cpython-311.pyc").write_bytes(b"mod")
    (prefix / "ghost.cpython-311.pyc").write_bytes(b"no source")
    (prefix / "notes.txt").write_text("not a pyc")
    secret = tmp_path / "secret"
    secret.write_text("host file")
    (tree / "evil.py").write_text("")
    (prefix / "evil.cpython-311.pyc").symlink_to(secret)
    (prefix / "elsewhere").symlink_to(tmp_path, target_is_directory=True)
    _harvest_pyc(prefix, tree)
    assert (tree / "__pycache__" / "app.cpython-311.pyc").read_bytes() == b"app"
    assert (tree / "pkg" / "__pycache__" / "mod.cpython-311.pyc").read_bytes() == b"mod"
    assert sorted(p.name for p in (tree / "__pycache__").iterdir()) == ["app.cpython-311.pyc"]
    assert not any(p.is_symlink() for p in tree.rglob("*"))
