"""The event loop every service runs on: uvloop by default, asyncio's own on request.

NIMBUS_EVENT_LOOP   uvloop | asyncio (default uvloop). `asyncio` is the escape hatch: the standard
                    library's loop, exactly what asyncio.run() gives (child watcher included).

uvloop (libuv) keeps asyncio's API: sockets, unix sockets, add_reader on pipes and pidfds, signal
handlers, timeouts, contextvars and grpc.aio behave the same. One thing is not taken from it:
starting subprocesses. uvloop starts them with fork(), not vfork() as CPython's subprocess does, so
the pthread_atfork handlers of gRPC core (fork support is on in grpcio's builds) run in a process
with live channels and servers: they broke the node-agent's gRPC connections ("Received unexpected
settings ack") and crashed it with SIGSEGV while it started runc. fork() also copies the page
tables of the whole process and runs Python's at-fork hooks in the child, with the loop blocked
until the child execs. So `Loop` starts subprocesses as asyncio does (subprocess.Popen, asyncio's
own subprocess transport) and learns of the exit through a pidfd on the loop (a thread waiting
where there are no pidfds), in place of asyncio's child watcher; uvloop's own SIGCHLD handling is
then never installed. Like asyncio's watchers it reaps only its own children, never the runc
containers the node-agent reaps through their pidfds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from asyncio import unix_events
from collections.abc import Callable, Mapping
from typing import Any

from nimbus.common.config import ConfigError

EVENT_LOOPS = ("uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]

_PIPE = subprocess.PIPE


def loop_factory(env: Mapping[str, str]) -> LoopFactory | None:
    """The factory for asyncio.Runner(loop_factory=...): None means asyncio's default loop."""
    raw = env.get("NIMBUS_EVENT_LOOP", "")
    name = raw.strip().lower() or "uvloop"
    if name not in EVENT_LOOPS:
        raise ConfigError(f"NIMBUS_EVENT_LOOP={raw!r} must be one of {', '.join(EVENT_LOOPS)}")
    if name == "asyncio":
        return None
    try:
        import uvloop  # noqa: F401
    except ImportError as err:
        raise ConfigError(
            f"NIMBUS_EVENT_LOOP={raw or 'uvloop (the default)'!s} but uvloop does "
            f"not import ({err}); run `make install`, or set NIMBUS_EVENT_LOOP=asyncio"
        ) from None
    return new_uvloop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """ "uvloop" or "asyncio", for the service's start-up log line."""
    return (
        "uvloop"
        if any(c.__module__.startswith("uvloop") for c in type(loop).__mro__)
        else "asyncio"
    )


def new_uvloop() -> asyncio.AbstractEventLoop:
    """A uvloop loop that starts subprocesses as asyncio's does (see the module's docstring)."""
    global _LOOP_CLASS
    if _LOOP_CLASS is None:
        # Made on first use, so that NIMBUS_EVENT_LOOP=asyncio never imports uvloop.
        import uvloop

        _LOOP_CLASS = type("Loop", (_AsyncioSubprocesses, uvloop.Loop), {"__module__": __name__})
    return _LOOP_CLASS()


_LOOP_CLASS: type[asyncio.AbstractEventLoop] | None = None


class _AsyncioSubprocesses:
    """subprocess_exec and subprocess_shell as asyncio's loop has them, for a loop (uvloop's)
    whose own start processes with fork(); every other method is the loop's."""

    async def subprocess_exec(
        self,
        protocol_factory: Callable[[], asyncio.SubprocessProtocol],
        program: Any,
        *args: Any,
        stdin: Any = _PIPE,
        stdout: Any = _PIPE,
        stderr: Any = _PIPE,
        universal_newlines: bool = False,
        shell: bool = False,
        bufsize: int = 0,
        encoding: Any = None,
        errors: Any = None,
        text: Any = None,
        **kwargs: Any,
    ) -> tuple[asyncio.SubprocessTransport, asyncio.SubprocessProtocol]:
        if shell:
            raise ValueError("shell must be False")
        _check_popen_args(universal_newlines, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        transport = await _spawn(
            self, protocol, [program, *args], False, stdin, stdout, stderr, kwargs
        )
        return transport, protocol

    async def subprocess_shell(
        self,
        protocol_factory: Callable[[], asyncio.SubprocessProtocol],
        cmd: str | bytes,
        *,
        stdin: Any = _PIPE,
        stdout: Any = _PIPE,
        stderr: Any = _PIPE,
        universal_newlines: bool = False,
        shell: bool = True,
        bufsize: int = 0,
        encoding: Any = None,
        errors: Any = None,
        text: Any = None,
        **kwargs: Any,
    ) -> tuple[asyncio.SubprocessTransport, asyncio.SubprocessProtocol]:
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if not shell:
            raise ValueError("shell must be True")
        _check_popen_args(universal_newlines, bufsize, text, encoding, errors)
        protocol = protocol_factory()
        transport = await _spawn(self, protocol, cmd, True, stdin, stdout, stderr, kwargs)
        return transport, protocol


def _check_popen_args(
    universal_newlines: bool, bufsize: int, text: Any, encoding: Any, errors: Any
) -> None:
    # The same refusals as asyncio's BaseEventLoop.subprocess_exec/_shell.
    if universal_newlines:
        raise ValueError("universal_newlines must be False")
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


async def _spawn(
    loop: Any,
    protocol: asyncio.SubprocessProtocol,
    args: Any,
    shell: bool,
    stdin: Any,
    stdout: Any,
    stderr: Any,
    kwargs: dict[str, Any],
) -> asyncio.SubprocessTransport:
    """What asyncio's _UnixSelectorEventLoop._make_subprocess_transport does, with the exit
    learnt from a pidfd instead of a child watcher."""
    waiter = loop.create_future()
    transport = unix_events._UnixSubprocessTransport(  # type: ignore[attr-defined]
        loop, protocol, args, shell, stdin, stdout, stderr, 0, waiter=waiter, **kwargs
    )
    _watch_exit(loop, transport)
    try:
        await waiter
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        transport.close()
        await transport._wait()
        raise
    return transport  # type: ignore[no-any-return]


def _watch_exit(loop: Any, transport: Any) -> None:
    pid: int = transport.get_pid()
    popen: subprocess.Popen[bytes] = transport.get_extra_info("subprocess")
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        # No pidfds (not Linux >= 5.3): a thread waits, as asyncio's ThreadedChildWatcher does.
        def wait() -> None:
            code = _reap(pid, popen, block=True)
            loop.call_soon_threadsafe(transport._process_exited, code)

        threading.Thread(target=wait, name=f"waitpid-{pid}", daemon=True).start()
        return

    def exited() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        # One loop iteration later, as asyncio's watcher callback: the pipes' last data first.
        loop.call_soon(transport._process_exited, _reap(pid, popen, block=False))

    loop.add_reader(pidfd, exited)


def _reap(pid: int, popen: subprocess.Popen[bytes], *, block: bool) -> int:
    try:
        # A readable pidfd means the process has ended: WNOHANG finds it.
        _, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        # Reaped by Popen.poll() (the transport's close()), or by someone else: code unknown.
        return popen.returncode if popen.returncode is not None else 255
    return os.waitstatus_to_exitcode(status)
