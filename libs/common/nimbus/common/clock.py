"""Time comes through a Clock so policies and tests never read the wall clock directly."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...
    def monotonic(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A Clock for tests. Time stands still until the test moves it (advance(), or setting t) or
    the code under test sleeps: sleep() returns at once, having moved time on by what was asked
    (unless advance_on_sleep is False), and lets the other tasks run. monotonic() is now() plus
    a fixed offset (it starts at `monotonic`, default now); slept lists every sleep asked for."""

    def __init__(
        self, now: float = 1000.0, *, monotonic: float | None = None, advance_on_sleep: bool = True
    ) -> None:
        self.t = now
        self.offset = 0.0 if monotonic is None else monotonic - now
        self.advance_on_sleep = advance_on_sleep
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t + self.offset

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if self.advance_on_sleep:
            self.t += seconds
        await asyncio.sleep(0)  # a sleep lets the other tasks run, as a real one does


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"
