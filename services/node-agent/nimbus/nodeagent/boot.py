"""Sandboxes from birth to death: boot a generic one, give it a function (LOAD), discard it.

A booted Sandbox is a runtime shim that has connected to the agent and waits for LOAD. The warm
pool keeps some per runtime; a cold start takes one (or boots one when none is left), attaches
the function's code, applies its memory limit and sends LOAD, so what remains of a cold start is
the function's own import time. The CPU share is applied after init: like Lambda's, init runs
without the per-memory CPU cap, so a small function's imports are not slowed fourteen-fold.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from nimbus.common.clock import Clock, SystemClock
from nimbus.common.errors import FunctionInitFailed, Unavailable
from nimbus.nodeagent import spec as specs
from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.logcapture import LogSource, LogWriter, OutputCapture
from nimbus.nodeagent.policy import cpu_fraction
from nimbus.nodeagent.protocol import Kind, ProtocolError, encode
from nimbus.nodeagent.sandbox import Limits, SandboxDriver, SandboxHandle, SandboxSpec
from nimbus.nodeagent.shim import InitError, ShimConnection, listen
from nimbus.nodeagent.spec import InstanceSpec

# How long a fresh sandbox's shim may take to start and connect.
CONNECT_TIMEOUT_S = 10.0
# The memory limit of a sandbox that does not know its function yet (the shim alone uses ~6 MB).
GENERIC_MEMORY_MB = 128


@dataclass(slots=True, eq=False)
class Sandbox:
    sandbox_id: str
    runtime: str
    handle: SandboxHandle
    conn: ShimConnection
    output: OutputCapture
    socket_dir: Path


class Booter:
    def __init__(
        self,
        driver: SandboxDriver,
        layout: NodeLayout,
        writer: LogWriter,
        *,
        cpu_quota: bool = True,
        clock: Clock | None = None,
        region: str = specs.DEFAULT_REGION,
    ) -> None:
        self._clock = clock or SystemClock()
        self._region = region
        self._driver = driver
        self._layout = layout
        self._writer = writer
        self._cpu_quota = cpu_quota

    @property
    def driver(self) -> SandboxDriver:
        return self._driver

    async def boot(self, runtime: str) -> Sandbox:
        """A generic sandbox whose shim has connected. Cleans up after itself if it fails."""
        sandbox_id = secrets.token_hex(6)
        socket_dir = self._layout.socket_dir(sandbox_id)
        socket_dir.mkdir(mode=0o700)
        listener = listen(socket_dir / "sock")
        handle: SandboxHandle | None = None
        output: OutputCapture | None = None
        try:
            spec = SandboxSpec(sandbox_id, runtime, GENERIC_MEMORY_MB, specs.BASE_ENV, socket_dir)
            handle = await self._driver.start(spec)
            output = self._capture(handle)
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    conn = await ShimConnection.accept(listener, self._driver.wait(handle))
            except TimeoutError:
                raise Unavailable(
                    f"a {runtime} sandbox did not start within {CONNECT_TIMEOUT_S:.0f} s"
                ) from None
            except InitError as err:
                raise Unavailable(f"a {runtime} sandbox failed to start: {err.message}") from None
        except BaseException:
            await asyncio.shield(self._cleanup(handle, output, socket_dir))
            raise
        finally:
            listener.close()
            (socket_dir / "sock").unlink(missing_ok=True)
        return Sandbox(sandbox_id, runtime, handle, conn, output, socket_dir)

    def _capture(self, handle: SandboxHandle) -> OutputCapture:
        driver = self._driver
        return OutputCapture(
            handle.output_fd,
            handle.error_fd,
            handle.sandbox_id,
            self._writer,
            peak_memory=lambda: driver.peak_memory_bytes(handle),
        )

    async def load(self, sb: Sandbox, spec: InstanceSpec, code_dir: Path) -> int:
        """Gives the sandbox its function and waits for the import; the init time in µs, on the
        agent's clock (from LOAD to READY: the runtime's own figure is the function's to fake).

        Raises FunctionInitFailed when the function's code cannot load (the caller discards the
        sandbox), Unavailable when the sandbox misbehaved."""
        memory_mb = spec.config.memory_mb
        budget = specs.START_BUDGET_S + spec.config.timeout_s
        # From here on (the function's init output too) its lines are the function's.
        sb.output.assign(LogSource(spec.namespace, spec.function, spec.version))
        try:
            task_root = await self._driver.attach_code(sb.handle, code_dir, Limits(memory_mb, None))
            async with asyncio.timeout(budget):
                started = self._clock.monotonic()
                stream = specs.log_stream_name(spec, sb.sandbox_id, self._clock.now())
                header = specs.load_header(spec, task_root, region=self._region, log_stream=stream)
                await sb.conn.send(encode(Kind.LOAD, header))
                await sb.conn.handshake()
                init_us = int((self._clock.monotonic() - started) * 1_000_000)
        except TimeoutError:
            raise self._init_failed(
                sb, "Runtime.InitTimeout", f"the handler did not load within {budget:.0f} s"
            ) from None
        except InitError as err:
            if self._driver.oom_killed(sb.handle):
                raise self._init_failed(
                    sb, "OutOfMemory", f"init used more than {memory_mb} MB of memory"
                ) from None
            if err.reported:
                # The runtime logged it itself, with its stack trace, as Lambda's runtimes do.
                raise FunctionInitFailed(err.error_type, err.message) from None
            raise self._init_failed(sb, err.error_type, err.message) from None
        except (ProtocolError, ConnectionError) as err:
            raise Unavailable(f"instance runtime misbehaved during init: {err}") from None
        except OSError as err:
            raise Unavailable(f"cannot give the sandbox its code: {err}") from None
        return init_us

    @staticmethod
    def _init_failed(sb: Sandbox, error_type: str, message: str) -> FunctionInitFailed:
        """An init failure the runtime could not log (it timed out, was killed, or died): the
        platform's ERROR line in the function's log says why."""
        sb.output.note(specs.init_error_line(error_type, message))
        return FunctionInitFailed(error_type, message)

    async def throttle(self, sb: Sandbox, memory_mb: int) -> None:
        """After init: the function's CPU share, in proportion to its memory (a hard cap unless
        NIMBUS_SANDBOX_CPU=shares)."""
        cpus = cpu_fraction(memory_mb) if self._cpu_quota else None
        await self._driver.set_limits(sb.handle, Limits(memory_mb, cpus))

    async def discard(self, sb: Sandbox) -> None:
        """Stops the sandbox and frees everything it held. Safe to call twice."""
        sb.conn.close()
        sb.output.keep_peak_memory()
        await self._cleanup(sb.handle, sb.output, sb.socket_dir)

    async def _cleanup(
        self, handle: SandboxHandle | None, output: OutputCapture | None, socket_dir: Path
    ) -> None:
        try:
            if handle is not None:
                await self._driver.stop(handle)
        finally:
            if output is not None:
                output.close()
            elif handle is not None:
                for fd in (handle.output_fd, handle.error_fd):
                    with contextlib.suppress(OSError):
                        os.close(fd)
            await asyncio.to_thread(shutil.rmtree, socket_dir, True)
