"""The event loop every service runs on: uvloop by default, asyncio's own on request.

NIMBUS_EVENT_LOOP   uvloop | asyncio (default uvloop). `asyncio` is the escape hatch: the standard
                    library's loop, exactly what asyncio.run() gives (child watcher included).

uvloop (libuv) keeps asyncio's API, so nothing else in a service changes: subprocesses (its own
SIGCHLD handling in place of asyncio's child watchers; it waits only for its own children, never
for the runc containers a node-agent reaps through their pidfds), add_reader on pipes and pidfds,
signal handlers, unix sockets and grpc.aio all run on either loop. The services' warm invoke path
costs less CPU per call on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from nimbus.common.config import ConfigError

EVENT_LOOPS = ("uvloop", "asyncio")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(env: Mapping[str, str]) -> LoopFactory | None:
    """The factory for asyncio.Runner(loop_factory=...): None means asyncio's default loop."""
    raw = env.get("NIMBUS_EVENT_LOOP", "")
    name = raw.strip().lower() or "uvloop"
    if name not in EVENT_LOOPS:
        raise ConfigError(f"NIMBUS_EVENT_LOOP={raw!r} must be one of {', '.join(EVENT_LOOPS)}")
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError as err:
        raise ConfigError(
            f"NIMBUS_EVENT_LOOP={raw or 'uvloop (the default)'!s} but uvloop does not import ({err}); "
            "run `make install`, or set NIMBUS_EVENT_LOOP=asyncio"
        ) from None
    return uvloop.new_event_loop


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    """"uvloop" or "asyncio", for the service's start-up log line."""
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
