"""What every tier of the tests shares: free loopback ports and waiting on a condition with a
deadline (never a bare sleep). The real servers are in tests.support.servers, the node-agent rig in
tests.support.nodeagent; a fake clock is nimbus.common.clock.FakeClock."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 20.0, host: str = "127.0.0.1") -> None:
    """Blocks until something accepts connections on the port; TimeoutError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s} s")


def _fail(what: str, timeout_s: float, last: object) -> AssertionError:
    tail = f"; last: {last!r}" if last is not None else ""
    return AssertionError(f"not within {timeout_s} s: {what}{tail}")


async def until(
    check: Callable[[], Any],
    timeout_s: float,
    what: str = "the condition",
    interval_s: float = 0.05,
    *,
    ignore: tuple[type[BaseException], ...] = (),
    in_thread: bool = False,
) -> Any:
    """Polls check() (a plain or an async function) until it returns something truthy, and returns
    that. Raises AssertionError naming `what` once timeout_s have passed. Exceptions of the types
    in `ignore` count as "not yet" (a server restarting); in_thread runs a blocking check in a
    thread so the event loop goes on meanwhile."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = await asyncio.to_thread(check) if in_thread else check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last = value
        except ignore as err:
            last = err
        if time.monotonic() >= deadline:
            raise _fail(what, timeout_s, last)
        await asyncio.sleep(interval_s)


def until_sync(
    check: Callable[[], Any],
    timeout_s: float,
    what: str = "the condition",
    interval_s: float = 0.05,
    *,
    ignore: tuple[type[BaseException], ...] = (),
) -> Any:
    """until() for tests without an event loop: polls a plain check() until truthy."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except ignore as err:
            last = err
        if time.monotonic() >= deadline:
            raise _fail(what, timeout_s, last)
        time.sleep(interval_s)


async def eventually(
    check: Callable[[], Any],
    timeout_s: float = 30.0,
    what: str = "the condition",
    interval_s: float = 0.2,
) -> Any:
    """until() for a blocking check against a running cluster: it runs in a thread, and an
    exception (a service coming back) counts as "not yet"."""
    return await until(check, timeout_s, what, interval_s, ignore=(Exception,), in_thread=True)


def until_passes(check: Callable[[], Any], timeout_s: float, interval_s: float = 0.2) -> Any:
    """Calls check(), which asserts, until it stops raising AssertionError, and returns what it
    returned; at the deadline its last AssertionError fails the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval_s)


def pid_gone(pid: int) -> bool:
    """Exited, or a zombie nobody reaped yet (our test process is not its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
