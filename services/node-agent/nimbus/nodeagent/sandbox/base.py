"""The sandbox SPI: how an instance's runtime process is started and stopped.

The core never knows whether an instance is a plain child process or a runc container. A driver
starts the runtime shim for a spec with the function code at `code_dir` (read-only for the function)
and gives the shim `socket_path` (bind-mounted by container drivers) through NIMBUS_SOCKET.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    instance_id: str
    runtime: str
    memory_mb: int
    # Everything the shim and the function see in their environment, shim variables included.
    env: Mapping[str, str]
    # Where the function's stdout and stderr go.
    log_path: Path


@dataclass(slots=True, eq=False)
class SandboxHandle:
    """A started sandbox; drivers subclass it with their private state."""

    instance_id: str
    # The host pid of the sandbox's first process (for logs and diagnostics).
    pid: int


class SandboxDriver(ABC):
    @abstractmethod
    def supports(self, runtime: str) -> bool:
        """Whether this node can run the runtime, e.g. python3.11."""

    @abstractmethod
    async def start(self, spec: SandboxSpec, code_dir: Path, socket_path: Path) -> SandboxHandle:
        """Starts the runtime shim; returns once the sandbox process exists (not once it is ready)."""

    @abstractmethod
    async def stop(self, handle: SandboxHandle, grace_s: float = 0.0) -> None:
        """Stops the sandbox and everything in it: SIGTERM, then SIGKILL after grace_s. Idempotent."""

    @abstractmethod
    async def wait(self, handle: SandboxHandle) -> int:
        """Waits for the sandbox to exit; its exit status (negative: killed by that signal)."""

    @abstractmethod
    def exit_code(self, handle: SandboxHandle) -> int | None:
        """None while the sandbox runs."""

    @abstractmethod
    async def reap_orphans(self) -> int:
        """Stops sandboxes left by a previous run of this node-agent; how many it found."""
