"""The runc driver: every sandbox is its own runc container (config in oci.py, seccomp.py).

Containers of a node live under a runc --root of their own (HOME/nodes/<node>/sandbox/runc) and
have ids "nimbus-<node>-<sandbox id>", so cleanup never touches anyone else's; the next start of
the agent deletes whatever a crashed run left there. The agent makes itself a child subreaper, so
each container's first process becomes its child once `runc run -d` returns: a pidfd tells the
event loop when it exits and waitid() gives the real exit status (exit 3, or killed by SIGKILL).

Each sandbox runs under a uid (and gid) of its own, taken from the node's range
(NIMBUS_SANDBOX_UID, NIMBUS_SANDBOX_UIDS) when it starts and given back once its container is
gone: what the kernel counts per uid (RLIMIT_NPROC, inotify instances, POSIX message queue bytes,
who owns the agent's socket) is never shared between tenants. Freed uids go to the back of the
line, so a uid is reused as late as possible.

An out-of-memory kill is made prompt: a 128 MB function runs at 128/1769 of a core, and so would
its dying process, tearing down what it had allocated (a 400 MB allocation's call took another
0.1-0.5 s after the kernel's kill on this 2-core box, and the kill itself waited for the
throttled task). The kernel's OOM notification (v1's memory.oom_control eventfd) comes just before
the kill, in the allocating task, which may then sit throttled for most of a CPU period before it
kills anyone: the driver lifts the sandbox's CPU cap at once. If within 50 ms the sandbox's first
process has SIGKILL pending (the instance is dying), the cap stays off; if not (the kernel killed a
child, the runtime lives on), the function's cap comes back: at most 50 ms uncapped per OOM kill,
each of which needs the sandbox to fill its memory again. A stop lifts the cap too.

A code package's Python is compiled in a one-shot container too (compile_python): a uid of the
range, no network, the same seccomp profile, the package read-only at /var/task, and a memory
limit, one core and a time limit (_COMPILE_*). The compiler writes its .pyc files under
pycache_prefix into a fresh tmpfs (its pages count toward that memory limit), from which the agent
copies back only regular files named for a source that exists, into __pycache__ dirs it creates:
the tenant's compile never writes to the host's disk or into the package.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import signal
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from nimbus.common.errors import InvalidArgument, Unavailable
from nimbus.common.logs import kv
from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.runtimes import RUNTIMES, shim_argv
from nimbus.nodeagent.sandbox import cgroups, mounts, oci, rootfs, seccomp
from nimbus.nodeagent.sandbox.base import (
    COMPILE_TIMEOUT_S,
    Limits,
    SandboxDriver,
    SandboxHandle,
    SandboxSpec,
)
from nimbus.nodeagent.sandbox.runccli import RuncCli

log = logging.getLogger(__name__)

_EXIT_WAIT_S = 5.0
# After an OOM notification, how often and how many times to look whether the kernel has
# signalled the sandbox's first process (the notification comes just before the kill).
_OOM_CHECK_S = 0.002
_OOM_CHECKS = 25
_SIGKILL_BIT = 1 << (signal.SIGKILL - 1)
# A package's compile: memory (its output tmpfs included), processes, one core's worth of CPU.
_COMPILE_MEMORY_MB = 512
_COMPILE_PIDS = 16
_COMPILE_PREFIX = "/tmp/pyc"
# A .pyc bigger than this is not copied back (the largest stdlib one is under 1 MB).
_MAX_PYC_BYTES = 64 * 1024 * 1024
_PR_SET_CHILD_SUBREAPER = 36
# Inside the sandbox the Runtime API listens where Lambda's does.
_RUNTIME_API_PORT = "9001"


@dataclass(slots=True, eq=False)
class RuncHandle(SandboxHandle):
    container_id: str
    cgroup: cgroups.Cgroup
    bundle: Path
    task_dir: Path
    uid: int
    exited: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    pidfd: int = -1
    # The limits attach_code or set_limits applied last (what an OOM check restores).
    limits: Limits | None = None
    # The cgroup's OOM eventfd (v1), watched by the event loop until the sandbox stops.
    oom_fd: int = -1
    # The cgroup's peak-memory file, opened at the first call's REPORT and kept until the stop.
    peak_fd: int = -1
    stopping: asyncio.Task[None] | None = None


class RuncDriver(SandboxDriver):
    name = "runc"
    isolated = True

    def __init__(
        self,
        layout: NodeLayout,
        node_id: str,
        *,
        runc: str,
        python: str,
        node: str | None,
        uids: range,
        tmp_mb: int,
        pids: int = 128,
    ) -> None:
        self._layout = layout
        self._python = python
        self._node = node
        self._uids = uids
        self._free_uids = deque(uids)
        self._tmp_mb = tmp_mb
        self._pids = pids
        self._prefix = f"nimbus-{node_id}-"
        self._cgroup_parent = f"/nimbus/{node_id}"
        self._v2 = cgroups.is_v2()
        base = layout.sandbox_dir
        self._state_root = base / "runc"
        self._runc = RuncCli(runc, self._state_root)
        self._rootfs, self._etc, self._runtime = base / "rootfs", base / "etc", base / "runtime"
        self._tasks, self._code_ro, self._bundles = (
            base / "tasks",
            base / "code-ro",
            base / "bundles",
        )
        self._system_binds: list[str] = []

    def supports(self, runtime: str) -> bool:
        return runtime in RUNTIMES and (runtime != "nodejs20" or self._node is not None)

    # -- node level -----------------------------------------------------------------------------

    async def prepare(self) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
        leftovers = await self._delete_leftovers()
        if leftovers:
            log.info("deleted leftover containers of this node", extra=kv(count=leftovers))
        await asyncio.to_thread(self._prepare_files)

    def _prepare_files(self) -> None:
        from nimbus.nodeagent.sandbox.process import reap_pid_files

        reap_pid_files(self._layout)  # a previous run may have used the process driver
        mounts.unmount_all(self._tasks)
        mounts.unmount_all(self._code_ro)
        for d in (self._tasks, self._bundles):
            shutil.rmtree(d, ignore_errors=True)
        cgroups.remove_tree(self._cgroup_parent, self._v2)
        self._state_root.mkdir(parents=True, exist_ok=True)
        self._bundles.mkdir(parents=True, exist_ok=True)
        self._system_binds = rootfs.build_rootfs(self._rootfs)
        rootfs.build_etc(self._etc, self._uids)
        rootfs.copy_runtimes(self._runtime)
        mounts.make_readonly_view(self._layout.code_dir, self._code_ro)
        mounts.make_shared_dir(self._tasks)

    async def _delete_leftovers(self) -> int:
        ids = await self._runc.container_ids(self._prefix)
        for cid in ids:
            await self._runc.delete(cid)
        return len(ids)

    async def close(self) -> None:
        await asyncio.to_thread(self._close_files)

    def _close_files(self) -> None:
        mounts.unmount_all(self._tasks)
        mounts.unmount_all(self._code_ro)
        cgroups.remove_tree(self._cgroup_parent, self._v2)
        # The shared parent goes too once no node uses it (rmdir fails while one does).
        cgroups.Cgroup(self._cgroup_parent.rsplit("/", 1)[0], self._v2).remove()

    # -- one sandbox ----------------------------------------------------------------------------

    async def start(self, spec: SandboxSpec) -> SandboxHandle:
        if not self.supports(spec.runtime):
            raise InvalidArgument(f"runtime {spec.runtime!r} is not supported on this node")
        cid = self._prefix + spec.sandbox_id
        if not self._free_uids:
            raise Unavailable(
                f"every sandbox uid of this node is in use ({len(self._uids)} from "
                f"{self._uids.start}; raise NIMBUS_SANDBOX_UIDS)"
            )
        handle = RuncHandle(
            sandbox_id=spec.sandbox_id,
            runtime=spec.runtime,
            pid=0,
            output_fd=-1,
            error_fd=-1,
            container_id=cid,
            cgroup=cgroups.Cgroup(f"{self._cgroup_parent}/{cid}", self._v2),
            bundle=self._bundles / spec.sandbox_id,
            task_dir=self._tasks / spec.sandbox_id,
            uid=self._free_uids.popleft(),
        )
        try:
            await asyncio.to_thread(self._write_bundle, spec, handle)
        except BaseException:
            self._release_uid(handle)
            await asyncio.shield(asyncio.to_thread(self._cleanup, handle))
            raise
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        handle.output_fd, handle.error_fd = out_r, err_r
        try:
            try:
                # The container inherits runc's stdout and stderr:
                # the pipes are its output from birth.
                code, err = await self._runc.run(
                    "run",
                    "-d",
                    "--pid-file",
                    str(handle.bundle / "pid"),
                    "-b",
                    str(handle.bundle),
                    cid,
                    stdout=out_w,
                    stderr=err_w,
                )
            finally:
                os.close(out_w)
                os.close(err_w)
            os.set_blocking(out_r, False)
            os.set_blocking(err_r, False)
            if code != 0:
                why = " ".join(filter(None, (_drain(err_r), _drain(out_r)))) or err
                raise Unavailable(f"runc could not start a {spec.runtime} sandbox: {why}")
            handle.pid = int((handle.bundle / "pid").read_text())
            handle.pidfd = os.pidfd_open(handle.pid)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            # Cleanup must finish even when the caller went away.
            await asyncio.shield(self._discard(handle))
            raise
        loop = asyncio.get_running_loop()
        loop.add_reader(handle.pidfd, self._on_exit, handle)
        oom_fd = handle.cgroup.oom_eventfd()
        if oom_fd is not None:
            handle.oom_fd = oom_fd
            loop.add_reader(oom_fd, self._on_oom, handle)
        self._layout.pid_path(spec.sandbox_id).write_text(str(handle.pid))
        return handle

    def _on_oom(self, handle: RuncHandle, checks_left: int = _OOM_CHECKS) -> None:
        if checks_left == _OOM_CHECKS:
            with contextlib.suppress(OSError):
                os.eventfd_read(handle.oom_fd)
            if handle.stopping is None and not handle.exited.done():
                handle.cgroup.lift_cpu_cap()
        if handle.stopping is not None or handle.exited.done() or _being_killed(handle.pid):
            return
        if checks_left > 1:
            asyncio.get_running_loop().call_later(
                _OOM_CHECK_S, self._on_oom, handle, checks_left - 1
            )
        elif handle.limits is not None:
            # The runtime survived (a child was killed): its cap comes back.
            with contextlib.suppress(OSError):
                handle.cgroup.set_limits(handle.limits.memory_mb, handle.limits.cpus)

    @staticmethod
    def _unwatch_oom(handle: RuncHandle) -> None:
        if handle.oom_fd >= 0:
            asyncio.get_running_loop().remove_reader(handle.oom_fd)
            os.close(handle.oom_fd)
            handle.oom_fd = -1

    async def _discard(self, handle: RuncHandle) -> None:
        with contextlib.suppress(Exception):
            await self._runc.delete(handle.container_id)
        self._release_uid(handle)
        await asyncio.to_thread(self._cleanup, handle)

    def _write_bundle(self, spec: SandboxSpec, handle: RuncHandle) -> None:
        handle.task_dir.mkdir(mode=0o755)
        handle.bundle.mkdir(mode=0o700)
        # Only this sandbox's user may reach the agent's socket.
        os.chown(spec.socket_dir, handle.uid, handle.uid, follow_symlinks=False)
        os.chmod(spec.socket_dir, 0o700)
        sock = spec.socket_dir / "sock"
        if sock.exists():
            os.chown(sock, handle.uid, handle.uid, follow_symlinks=False)
        env = {
            **spec.env,
            "NIMBUS_SOCKET": f"{oci.SOCKET_DIR}/sock",
            "NIMBUS_RUNTIME_API_PORT": _RUNTIME_API_PORT,
        }
        bundle = oci.BundleSpec(
            args=shim_argv(
                spec.runtime, oci.RUNTIME_ROOT, python=self._python, node=self._node or "node"
            ),
            env=env,
            uid=handle.uid,
            gid=handle.uid,
            rootfs=str(self._rootfs),
            etc_dir=str(self._etc),
            runtime_dir=str(self._runtime),
            task_dir=str(handle.task_dir),
            socket_dir=str(spec.socket_dir),
            tmp_mb=self._tmp_mb,
            memory_mb=spec.memory_mb,
            pids=self._pids,
            cpu_shares=oci.cpu_shares(spec.memory_mb),
            cgroups_path=handle.cgroup.path,
            seccomp=seccomp.profile(allow_listen=spec.runtime == "provided"),
            system_binds=self._system_binds,
        )
        (handle.bundle / "config.json").write_text(json.dumps(oci.config(bundle)))

    async def attach_code(self, handle: SandboxHandle, code_dir: Path, limits: Limits) -> str:
        assert isinstance(handle, RuncHandle)
        view = self._code_ro / code_dir.relative_to(self._layout.code_dir)

        def attach() -> None:
            mounts.bind(view, handle.task_dir)
            handle.cgroup.set_limits(limits.memory_mb, limits.cpus)

        handle.limits = limits
        await asyncio.to_thread(attach)
        return oci.TASK_ROOT

    async def compile_python(self, tree: Path) -> None:
        if not self._free_uids:
            log.warning("no free sandbox uid to compile a code package; it compiles on import")
            return
        tag = secrets.token_hex(6)
        cid = f"{self._prefix}compile-{tag}"
        bundle = self._bundles / f"compile-{tag}"
        cgroup = cgroups.Cgroup(f"{self._cgroup_parent}/{cid}", self._v2)
        uid = self._free_uids.popleft()
        code: int | None = None
        try:
            await asyncio.to_thread(self._write_compile_bundle, tree, bundle, uid, cgroup)
            try:
                # --keep: the cgroup outlives the compiler, to say whether memory ended it.
                code, _ = await self._runc.run(
                    "run",
                    "--keep",
                    "-b",
                    str(bundle),
                    cid,
                    stdout=asyncio.subprocess.DEVNULL,
                    timeout_s=COMPILE_TIMEOUT_S,
                )
            except TimeoutError:
                code = None
            if code not in (0, 1):  # 1: a file did not compile, the function's to report
                why = (
                    f"it needed more than {_COMPILE_MEMORY_MB} MB"
                    if cgroup.oom_kills()
                    else f"it took longer than {COMPILE_TIMEOUT_S:.0f} s"
                    if code is None
                    else f"the compiler exited with {code}"
                )
                log.warning(
                    f"stopped compiling a code package: {why}; what was compiled is kept, the "
                    "rest compiles on import",
                    extra=kv(container=cid),
                )
        finally:
            # Kills it too if it still runs (after a timeout).
            await asyncio.shield(self._runc.delete(cid))
            await asyncio.shield(asyncio.to_thread(_finish_compile, tree, bundle, cgroup))
            self._free_uids.append(uid)

    def _write_compile_bundle(
        self, tree: Path, bundle: Path, uid: int, cgroup: cgroups.Cgroup
    ) -> None:
        out = bundle / "out"
        bundle.mkdir(mode=0o700)
        out.mkdir(mode=0o700)
        mounts.mount("tmpfs", str(out), mounts.MS_NOSUID | mounts.MS_NODEV, "tmpfs")
        os.chown(out, uid, uid)
        os.chmod(out, 0o700)
        spec = oci.BundleSpec(
            args=[
                self._python,
                "-I",
                "-X",
                f"pycache_prefix={_COMPILE_PREFIX}",
                "-m",
                "compileall",
                "-q",
                oci.TASK_ROOT,
            ],
            env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"},
            uid=uid,
            gid=uid,
            rootfs=str(self._rootfs),
            etc_dir=str(self._etc),
            runtime_dir=str(self._runtime),
            task_dir=str(tree),
            socket_dir="",
            tmp_mb=0,
            memory_mb=_COMPILE_MEMORY_MB,
            pids=_COMPILE_PIDS,
            cpu_shares=oci.cpu_shares(_COMPILE_MEMORY_MB),
            cgroups_path=cgroup.path,
            seccomp=seccomp.profile(allow_listen=False),
            system_binds=self._system_binds,
            tmp_dir=str(out),
            cpu_quota_us=oci.CPU_PERIOD_US,
        )
        (bundle / "config.json").write_text(json.dumps(oci.config(spec)))

    async def set_limits(self, handle: SandboxHandle, limits: Limits) -> None:
        assert isinstance(handle, RuncHandle)
        handle.limits = limits
        await asyncio.to_thread(handle.cgroup.set_limits, limits.memory_mb, limits.cpus)

    async def stop(self, handle: SandboxHandle) -> None:
        assert isinstance(handle, RuncHandle)
        # Idempotent and safe against concurrent callers: one stop task, everyone awaits it.
        if handle.stopping is None:
            handle.stopping = asyncio.ensure_future(self._stop(handle))
        await asyncio.shield(handle.stopping)

    async def _stop(self, handle: RuncHandle) -> None:
        self._unwatch_oom(handle)
        if handle.peak_fd >= 0:
            os.close(handle.peak_fd)
            handle.peak_fd = -1
        if not handle.exited.done() and handle.pidfd >= 0:
            # Dying at a small function's share of a core would take a while.
            handle.cgroup.lift_cpu_cap()
            # SIGKILL to the container's first process ends its whole pid namespace at once.
            with contextlib.suppress(ProcessLookupError, OSError):
                signal.pidfd_send_signal(handle.pidfd, signal.SIGKILL)
            try:
                async with asyncio.timeout(_EXIT_WAIT_S):
                    await asyncio.shield(handle.exited)
            except TimeoutError:
                log.warning(
                    "sandbox did not exit after SIGKILL", extra=kv(container=handle.container_id)
                )
        await self._runc.delete(handle.container_id)
        self._release_uid(handle)
        await asyncio.to_thread(self._cleanup, handle)

    def _release_uid(self, handle: RuncHandle) -> None:
        """Gives the uid back once nothing of the sandbox can still run under it: its first process
        was reaped (all of its pid namespace died with it) or it never started."""
        if handle.uid < 0:
            return
        if handle.pid and not handle.exited.done():
            log.warning(
                "a sandbox's uid stays retired: its process was not seen to exit",
                extra=kv(container=handle.container_id, uid=handle.uid),
            )
        else:
            self._free_uids.append(handle.uid)
        handle.uid = -1

    def _cleanup(self, handle: RuncHandle) -> None:
        mounts.unmount_all(handle.task_dir)
        with contextlib.suppress(OSError):
            handle.task_dir.rmdir()
        shutil.rmtree(handle.bundle, ignore_errors=True)
        handle.cgroup.remove()
        self._layout.pid_path(handle.sandbox_id).unlink(missing_ok=True)

    def _on_exit(self, handle: RuncHandle) -> None:
        asyncio.get_running_loop().remove_reader(handle.pidfd)
        self._unwatch_oom(handle)
        try:
            result = os.waitid(os.P_PIDFD, handle.pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:
            result = None  # not our child after all (no subreaper): the status is unknown
        finally:
            os.close(handle.pidfd)
            handle.pidfd = -1
        status = -signal.SIGKILL
        if result is not None:
            status = result.si_status if result.si_code == os.CLD_EXITED else -result.si_status
        if not handle.exited.done():
            handle.exited.set_result(status)

    async def wait(self, handle: SandboxHandle) -> int:
        assert isinstance(handle, RuncHandle)
        return await asyncio.shield(handle.exited)

    def exit_code(self, handle: SandboxHandle) -> int | None:
        assert isinstance(handle, RuncHandle)
        return handle.exited.result() if handle.exited.done() else None

    def oom_killed(self, handle: SandboxHandle) -> bool:
        assert isinstance(handle, RuncHandle)
        # One small cgroupfs read, only after a sandbox died: not worth a thread hop.
        return handle.cgroup.oom_kills() > 0

    def memory_bytes(self, handle: SandboxHandle) -> int | None:
        assert isinstance(handle, RuncHandle)
        return handle.cgroup.memory_bytes()

    def peak_memory_bytes(self, handle: SandboxHandle) -> int | None:
        assert isinstance(handle, RuncHandle)
        if handle.peak_fd < 0:
            if handle.stopping is not None:
                return handle.cgroup.peak_memory_bytes()  # no fd may outlive _stop, which closed it
            try:
                handle.peak_fd = handle.cgroup.open_peak_memory()
            except OSError:
                return None
        return cgroups.read_counter(handle.peak_fd)


def _finish_compile(tree: Path, bundle: Path, cgroup: cgroups.Cgroup) -> None:
    out = bundle / "out"
    try:
        if (out / "pyc").is_dir():
            _harvest_pyc(out / "pyc" / oci.TASK_ROOT.lstrip("/"), tree)
    finally:
        mounts.umount(str(out))
        shutil.rmtree(bundle, ignore_errors=True)
        cgroup.remove()


def _harvest_pyc(prefix: Path, tree: Path) -> None:
    """Copies <prefix>/<dir>/<name>.<tag>.pyc to <tree>/<dir>/__pycache__/ for each <name>.py of
    the tree; nothing else, and never through a symlink (the tenant's compile wrote `prefix`)."""
    for dirpath, _, filenames in os.walk(prefix):
        rel = os.path.relpath(dirpath, prefix)
        target = tree if rel == "." else tree / rel
        try:
            if not stat.S_ISDIR(os.lstat(target).st_mode):
                continue
        except OSError:
            continue
        for name in filenames:
            stem, _, tag = name.removesuffix(".pyc").rpartition(".")
            if not name.endswith(".pyc") or not stem or not tag.startswith("cpython-"):
                continue
            try:
                if not stat.S_ISREG(os.lstat(target / f"{stem}.py").st_mode):
                    continue
            except OSError:
                continue
            _copy_pyc(os.path.join(dirpath, name), target / "__pycache__", name)


def _copy_pyc(source: str, cache: Path, name: str) -> None:
    try:
        src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        st = os.fstat(src)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_PYC_BYTES:
            return
        with contextlib.suppress(FileExistsError):
            cache.mkdir(mode=0o755)
        if not stat.S_ISDIR(os.lstat(cache).st_mode):
            return
        dst = os.open(
            cache / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444
        )
        try:
            offset = 0
            while offset < st.st_size and (sent := os.sendfile(dst, src, offset, st.st_size)):
                offset += sent
        finally:
            os.close(dst)
    except OSError:
        return
    finally:
        os.close(src)


def _being_killed(pid: int) -> bool:
    """Whether the process has SIGKILL pending, or is already gone or a zombie."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
    except OSError:
        return True
    for line in status.split(b"\n"):
        key, _, value = line.partition(b":")
        if key in (b"SigPnd", b"ShdPnd") and int(value, 16) & _SIGKILL_BIT:
            return True
        if key == b"State" and value.strip()[:1] in (b"Z", b"X"):
            return True
    return False


def _drain(fd: int) -> str:
    chunks = []
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace").strip()
