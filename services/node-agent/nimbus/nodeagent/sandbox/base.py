"""The sandbox SPI: how an instance's runtime shim is started, given code, limited and stopped.

The core never knows whether an instance is a plain child process or a runc container. Every
sandbox starts generic, before the function is known (that is what lets a warm pool exist): the
shim connects to the agent's socket in `socket_dir` and waits. Giving it a function is then
`attach_code` (the code becomes visible, read-only, at the path it returns, and the function's
limits apply), followed by the LOAD frame the core sends itself.

Output: a driver hands back the read ends of two pipes, the sandbox's stdout and its stderr, so
every line keeps the stream it was written to; the core tags them per call (logcapture.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# How long compiling one code package may take; its instances compile on import after that.
COMPILE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    sandbox_id: str
    runtime: str
    # The limit while the sandbox is generic; set_limits applies the function's own.
    memory_mb: int
    # The shim's environment before LOAD (the function's own env comes with LOAD).
    env: Mapping[str, str]
    # Host directory holding the agent's listening socket `sock`; drivers make it reachable.
    socket_dir: Path


@dataclass(frozen=True, slots=True)
class Limits:
    memory_mb: int
    # CPU as a fraction of one core (1769 MB = 1.0, as Lambda does); None: no CPU cap.
    cpus: float | None


@dataclass(slots=True, eq=False)
class SandboxHandle:
    """A started sandbox; drivers subclass it with their private state."""

    sandbox_id: str
    runtime: str
    # The host pid of the sandbox's first process (for logs and diagnostics).
    pid: int
    # Read ends (non-blocking) of the sandbox's stdout and stderr pipes;
    # the core owns and closes them.
    output_fd: int
    error_fd: int


class SandboxDriver(ABC):
    name: str = ""
    # Whether function code is isolated from the host; False prints a loud warning at start.
    isolated: bool = False

    @abstractmethod
    def supports(self, runtime: str) -> bool:
        """Whether this node can run the runtime, e.g. python3.11."""

    @abstractmethod
    async def prepare(self) -> None:
        """Once at agent start, before anything else: node-level setup, leftovers of a previous run
        of this node stopped and cleaned up."""

    @abstractmethod
    async def start(self, spec: SandboxSpec) -> SandboxHandle:
        """Starts a generic shim;
        returns once the sandbox process exists (not once it connected)."""

    @abstractmethod
    async def attach_code(self, handle: SandboxHandle, code_dir: Path, limits: Limits) -> str:
        """Makes code_dir visible read-only inside the sandbox and applies the limits (one step: a
        cold start pays for one thread hop, not two); the path the shim must use."""

    @abstractmethod
    async def set_limits(self, handle: SandboxHandle, limits: Limits) -> None:
        """Applies the function's memory and CPU limits to a running sandbox."""

    @abstractmethod
    async def stop(self, handle: SandboxHandle) -> None:
        """Kills the sandbox and everything in it, and frees what it held. Idempotent."""

    @abstractmethod
    async def wait(self, handle: SandboxHandle) -> int:
        """Waits for the sandbox's first process to exit;
        its status (negative: killed by that signal)."""

    @abstractmethod
    def exit_code(self, handle: SandboxHandle) -> int | None:
        """None while the sandbox runs."""

    @abstractmethod
    def oom_killed(self, handle: SandboxHandle) -> bool:
        """Whether the kernel killed something in the sandbox for exceeding its memory limit."""

    @abstractmethod
    def memory_bytes(self, handle: SandboxHandle) -> int | None:
        """Memory the sandbox uses now (its cgroup's charge), when the driver can tell."""

    @abstractmethod
    def peak_memory_bytes(self, handle: SandboxHandle) -> int | None:
        """The most memory the sandbox has used since it started, when the driver can tell; a
        few-µs read, called at the end of every call for its REPORT line."""

    @abstractmethod
    async def compile_python(self, tree: Path) -> None:
        """Byte-compiles the Python sources under `tree` into its __pycache__ dirs, best effort and
        bounded in memory, CPU and time; a package is the tenant's, so isolated drivers compile
        it inside a sandbox. Afterwards the tree is as before but for new .pyc files, all of it
        owned by the agent's user."""

    @abstractmethod
    async def close(self) -> None:
        """At agent exit, after every sandbox stopped: undo prepare()'s node-level setup."""
