"""The parts of a sandbox's file system the runc driver builds once per node, at agent start.

    rootfs/    an empty skeleton: mount points and the merged-/usr symlinks (bin -> usr/bin, ...).
               Shared by every sandbox of the node, read-only inside them.
    etc/       a minimal /etc: selected files copied from the host plus our own passwd, group and
               hosts. Never shadow, gshadow, ssl/private or anything else secret.
    runtime/   copies of the shims (the checkout may not be readable by the sandbox's uid).

Blocking file work; the caller runs it in a thread.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from nimbus.nodeagent.runtimes import RUNTIMES_DIR, SHIM_FILES
from nimbus.nodeagent.sandbox.oci import MOUNT_POINTS

# Top-level system directories a binary may need; /usr is always mounted. On merged-/usr hosts
# these are symlinks into usr/ and are recreated as such; real directories are bind-mounted.
SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# Host /etc entries a runtime may read (dynamic loader, time zone, name services, certificates).
ETC_COPY = (
    "alternatives",
    "debian_version",
    "gai.conf",
    "host.conf",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "os-release",
    "protocols",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "ca-certificates.conf",
    "python3",
    "python3.11",
)


def user_name(uid: int) -> str:
    """Each sandbox has a uid of its own, named as Lambda names its sandbox users."""
    return f"sbx_user{uid}"


def build_rootfs(rootfs: Path, host_root: Path = Path("/")) -> list[str]:
    """Creates the skeleton; the system directories that must be bind-mounted (absolute paths)."""
    binds: list[str] = []
    for point in MOUNT_POINTS:
        (rootfs / point).mkdir(parents=True, exist_ok=True)
    for name in SYSTEM_DIRS:
        host, mine = host_root / name, rootfs / name
        if host.is_symlink():
            target = os.readlink(host)
            if mine.is_symlink() and os.readlink(mine) == target:
                continue
            _remove(mine)
            os.symlink(target, mine)
        elif host.is_dir():
            if mine.is_symlink():
                _remove(mine)
            mine.mkdir(exist_ok=True)
            binds.append(f"/{name}")
    for path in [rootfs, *(rootfs / p for p in MOUNT_POINTS)]:
        os.chmod(path, 0o755)
    # runc gives a tmpfs the mode of the directory it covers: /tmp must be world-writable, sticky.
    os.chmod(rootfs / "tmp", 0o1777)
    return binds


def build_etc(etc: Path, uids: range, host_etc: Path = Path("/etc")) -> None:
    """uids: every sandbox uid of the node, each its own user and group (gid = uid)."""
    if etc.exists():
        shutil.rmtree(etc)
    etc.mkdir(parents=True)
    for name in ETC_COPY:
        src = host_etc / name
        if not src.exists() and not src.is_symlink():
            continue
        dst = etc / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            shutil.copytree(src, dst, symlinks=True)
        else:
            shutil.copy2(src, dst)
    users = "".join(f"{user_name(u)}:x:{u}:{u}::/tmp:/usr/sbin/nologin\n" for u in uids)
    groups = "".join(f"{user_name(u)}:x:{u}:\n" for u in uids)
    files = {
        "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"{users}nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\n{groups}nogroup:x:65534:\n",
        "hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
        "hostname": "sandbox\n",
        "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
        "networks: files\nprotocols: files\nservices: files\n",
        # No network but loopback: nothing to resolve against.
        "resolv.conf": "",
    }
    for name, text in files.items():
        (etc / name).write_text(text)
    for dirpath, dirnames, filenames in os.walk(etc):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if not os.path.islink(p):
                os.chmod(p, 0o644)
    os.chmod(etc, 0o755)


def copy_runtimes(dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    for rel in SHIM_FILES:
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RUNTIMES_DIR / rel, target)
        os.chmod(target, 0o444)
        os.chmod(target.parent, 0o755)
    os.chmod(dst, 0o755)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
