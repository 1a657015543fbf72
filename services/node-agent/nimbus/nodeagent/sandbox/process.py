"""The process driver: each instance is a plain child process in its own session. No isolation.

It exists for development machines and tests; the runc driver adds namespaces and cgroups. The
shim asks the kernel to SIGKILL it when the agent dies (PR_SET_PDEATHSIG), and a pid file per
instance lets the next run of the agent kill whatever survived anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from nimbus.common.errors import InvalidArgument, Unavailable
from nimbus.common.logs import kv
from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.runtimes import PYTHON_BOOTSTRAP
from nimbus.nodeagent.sandbox.base import SandboxDriver, SandboxHandle, SandboxSpec

log = logging.getLogger(__name__)

_INSTANCE_ARG = "--nimbus-instance="
_REAP_WAIT_S = 5.0


@dataclass(slots=True, eq=False)
class ProcessHandle(SandboxHandle):
    proc: asyncio.subprocess.Process


class ProcessDriver(SandboxDriver):
    def __init__(self, layout: NodeLayout, *, python: str) -> None:
        self._layout = layout
        # -s: no user site-packages, so the host user's packages cannot leak into a function.
        self._commands = {"python3.11": [python, "-s", str(PYTHON_BOOTSTRAP)]}

    def supports(self, runtime: str) -> bool:
        return runtime in self._commands

    async def start(self, spec: SandboxSpec, code_dir: Path, socket_path: Path) -> SandboxHandle:
        if spec.runtime not in self._commands:
            raise InvalidArgument(f"runtime {spec.runtime!r} is not supported on this node")
        # The instance id in argv lets a later run recognise its shim under a possibly reused pid.
        argv = [*self._commands[spec.runtime], f"{_INSTANCE_ARG}{spec.instance_id}"]
        env = {
            # Bytecode is cached per node, not written into the (shared, read-only) code directory.
            "PYTHONPYCACHEPREFIX": str(self._layout.pycache_dir),
            **spec.env,
            "NIMBUS_SOCKET": str(socket_path),
            "NIMBUS_AGENT_PID": str(os.getpid()),
        }
        log_fd = os.open(spec.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                cwd=code_dir,
                env=env,
                # Its own process group: stop() kills whatever the function spawned too.
                start_new_session=True,
            )
        except OSError as err:
            raise Unavailable(f"cannot start a {spec.runtime} instance: {err}") from err
        finally:
            os.close(log_fd)
        # A few bytes; not worth a thread hop.
        self._layout.pid_path(spec.instance_id).write_text(str(proc.pid))
        return ProcessHandle(instance_id=spec.instance_id, pid=proc.pid, proc=proc)

    async def stop(self, handle: SandboxHandle, grace_s: float = 0.0) -> None:
        assert isinstance(handle, ProcessHandle)
        proc = handle.proc
        if proc.returncode is None and grace_s > 0:
            _kill_group(handle.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    await proc.wait()
            except TimeoutError:
                pass
        # Also after the shim exited: children the function left behind share its group.
        _kill_group(handle.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(_REAP_WAIT_S):
                await proc.wait()
        except TimeoutError:
            log.warning("instance process did not exit after SIGKILL", extra=kv(pid=handle.pid))
        self._layout.pid_path(handle.instance_id).unlink(missing_ok=True)

    async def wait(self, handle: SandboxHandle) -> int:
        assert isinstance(handle, ProcessHandle)
        return await handle.proc.wait()

    def exit_code(self, handle: SandboxHandle) -> int | None:
        assert isinstance(handle, ProcessHandle)
        return handle.proc.returncode

    async def reap_orphans(self) -> int:
        found = 0
        for pid_file in self._layout.run_dir.glob("*.pid"):
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


def is_shim(pid: int, instance_id: str) -> bool:
    """Whether pid still runs the shim of this instance (and not some process that reused the pid)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    marker = f"{_INSTANCE_ARG}{instance_id}".encode()
    return marker in args and any(arg.endswith(b"bootstrap.py") for arg in args)


def _kill_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        log.warning("no permission to signal instance", extra=kv(pid=pid))
