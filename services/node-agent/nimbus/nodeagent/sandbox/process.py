"""The process driver: each instance is a plain child process in its own session. NO ISOLATION.

It exists for machines without runc (macOS laptops) and is used only when configured or when runc
is missing; main.py prints a loud warning when it is. The shim asks the kernel to SIGKILL it when
the agent dies (PR_SET_PDEATHSIG), and a pid file per instance lets the next run of the agent kill
whatever survived anyway. There are no memory or CPU limits here; timeouts still hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from nimbus.common.errors import InvalidArgument, Unavailable
from nimbus.common.logs import kv
from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.runtimes import RUNTIMES, RUNTIMES_DIR, shim_argv
from nimbus.nodeagent.sandbox.base import (
    COMPILE_TIMEOUT_S,
    Limits,
    SandboxDriver,
    SandboxHandle,
    SandboxSpec,
)

log = logging.getLogger(__name__)

_INSTANCE_ARG = "--nimbus-instance="
_REAP_WAIT_S = 5.0


@dataclass(slots=True, eq=False)
class ProcessHandle(SandboxHandle):
    proc: asyncio.subprocess.Process
    # The shim's /proc/<pid>/status, opened at the first call's REPORT and kept until the stop:
    # every call reads it, and an open and a close cost more than the read.
    status_fd: int = -1
    stopped: bool = False


class ProcessDriver(SandboxDriver):
    name = "process"
    isolated = False

    def __init__(self, layout: NodeLayout, *, python: str, node: str | None) -> None:
        self._layout = layout
        self._python = python
        self._node = node

    def supports(self, runtime: str) -> bool:
        return runtime in RUNTIMES and (runtime != "nodejs20" or self._node is not None)

    async def prepare(self) -> None:
        await asyncio.to_thread(reap_pid_files, self._layout)

    async def start(self, spec: SandboxSpec) -> SandboxHandle:
        if not self.supports(spec.runtime):
            raise InvalidArgument(f"runtime {spec.runtime!r} is not supported on this node")
        argv = shim_argv(spec.runtime, RUNTIMES_DIR, python=self._python, node=self._node or "node")
        # The instance id in argv lets a later run recognise its shim under a possibly reused pid.
        argv.append(f"{_INSTANCE_ARG}{spec.sandbox_id}")
        env = {
            # The code directories are shared between instances: no bytecode written into them.
            "PYTHONDONTWRITEBYTECODE": "1",
            **spec.env,
            "NIMBUS_SOCKET": str(spec.socket_dir / "sock"),
            "NIMBUS_AGENT_PID": str(os.getpid()),
            # Instances share the host's network here: the Runtime API takes any free port.
            "NIMBUS_RUNTIME_API_PORT": "0",
        }
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out_w,
                stderr=err_w,
                cwd="/",
                env=env,
                # Its own process group: stop() kills whatever the function spawned too.
                start_new_session=True,
            )
        except OSError as err:
            os.close(out_r)
            os.close(err_r)
            raise Unavailable(f"cannot start a {spec.runtime} instance: {err}") from err
        finally:
            os.close(out_w)
            os.close(err_w)
        os.set_blocking(out_r, False)
        os.set_blocking(err_r, False)
        # A few bytes; not worth a thread hop.
        self._layout.pid_path(spec.sandbox_id).write_text(str(proc.pid))
        return ProcessHandle(spec.sandbox_id, spec.runtime, proc.pid, out_r, err_r, proc)

    async def attach_code(self, handle: SandboxHandle, code_dir: Path, limits: Limits) -> str:
        return str(code_dir)  # no cgroups here: the limits cannot apply

    async def compile_python(self, tree: Path) -> None:
        """On the host, as this user, bounded in time only: this driver isolates nothing."""
        proc = await asyncio.create_subprocess_exec(
            self._python,
            "-I",
            "-m",
            "compileall",
            "-q",
            str(tree),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(COMPILE_TIMEOUT_S):
                await proc.wait()
        except BaseException as err:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            if not isinstance(err, TimeoutError):
                raise
            log.warning("stopped compiling a code package: it took longer than the limit")

    async def set_limits(self, handle: SandboxHandle, limits: Limits) -> None:
        return None  # no cgroups here

    async def stop(self, handle: SandboxHandle) -> None:
        assert isinstance(handle, ProcessHandle)
        handle.stopped = True
        if handle.status_fd >= 0:
            os.close(handle.status_fd)
            handle.status_fd = -1
        # Also after the shim exited: children the function left behind share its group.
        _kill_group(handle.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(_REAP_WAIT_S):
                await handle.proc.wait()
        except TimeoutError:
            log.warning("instance process did not exit after SIGKILL", extra=kv(pid=handle.pid))
        self._layout.pid_path(handle.sandbox_id).unlink(missing_ok=True)

    async def wait(self, handle: SandboxHandle) -> int:
        assert isinstance(handle, ProcessHandle)
        return await handle.proc.wait()

    def exit_code(self, handle: SandboxHandle) -> int | None:
        assert isinstance(handle, ProcessHandle)
        return handle.proc.returncode

    def oom_killed(self, handle: SandboxHandle) -> bool:
        return False

    def memory_bytes(self, handle: SandboxHandle) -> int | None:
        return None

    def peak_memory_bytes(self, handle: SandboxHandle) -> int | None:
        # No cgroup here: the shim's own peak RSS (VmHWM), without what it spawned.
        assert isinstance(handle, ProcessHandle)
        if handle.status_fd < 0:
            if handle.stopped:
                return peak_rss_bytes(handle.pid)  # no fd may outlive stop(), which closed it
            try:
                handle.status_fd = os.open(f"/proc/{handle.pid}/status", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                return None
        try:
            return parse_vm_hwm(os.pread(handle.status_fd, 8192, 0))
        except OSError:
            return None

    async def close(self) -> None:
        return None


def reap_pid_files(layout: NodeLayout) -> int:
    """Kills shims a previous run of this node left (their pid files say which); how many."""
    found = 0
    for pid_file in layout.run_dir.glob("*.pid"):
        instance_id = pid_file.stem
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid > 0 and is_shim(pid, instance_id):
            found += 1
            _kill_group(pid, signal.SIGKILL)
            log.info("killed a leftover instance", extra=kv(instance_id=instance_id, pid=pid))
        pid_file.unlink(missing_ok=True)
    return found


def peak_rss_bytes(pid: int) -> int | None:
    try:
        fd = os.open(f"/proc/{pid}/status", os.O_RDONLY)
        try:
            status = os.read(fd, 8192)
        finally:
            os.close(fd)
    except OSError:
        return None
    return parse_vm_hwm(status)


def parse_vm_hwm(status: bytes) -> int | None:
    start = status.find(b"VmHWM:")
    if start < 0:
        return None
    return int(status[start + 6 : status.index(b"kB", start)]) * 1024


def is_shim(pid: int, instance_id: str) -> bool:
    """Whether pid still runs the shim of this instance
    (and not some process that reused the pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    marker = f"{_INSTANCE_ARG}{instance_id}".encode()
    return marker in args and any(arg.endswith((b"bootstrap.py", b"bootstrap.js")) for arg in args)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        log.warning("no permission to signal instance", extra=kv(pid=pid))
