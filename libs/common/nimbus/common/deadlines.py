"""Per-call deadlines enforced by one event-loop timer, for connections that carry many calls
(the invoker's invoke lane, the node-agent's pipe to a sandbox).

A timer, or asyncio.timeout(), per call costs ~2-6 µs on uvloop; here a call costs a dict set and
pop. The one timer is armed for the earliest deadline; when it fires it hands every due key to
`due` and re-arms for the next. Each call still ends at its own deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Deadlines(Generic[K, V]):
    def __init__(self, due: Callable[[K, V], None]) -> None:
        self._due = due
        # key → (deadline in loop time, the value handed to `due`)
        self._at: dict[K, tuple[float, V]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._at)

    @property
    def armed(self) -> bool:
        return self._timer is not None

    def add(self, key: K, at: float, value: V) -> None:
        """`due(key, value)` at `at` (loop time), unless the key is discarded first."""
        self._at[key] = (at, value)
        timer = self._timer
        if timer is None or at < timer.when():
            self._arm(at)

    def discard(self, key: K) -> None:
        self._at.pop(key, None)

    def clear(self) -> None:
        self._at.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = asyncio.get_running_loop().time()
        due = [(key, value) for key, (at, value) in self._at.items() if at <= now]
        for key, _ in due:
            del self._at[key]
        for key, value in due:
            self._due(key, value)
        if self._at and self._timer is None:
            self._arm(min(at for at, _ in self._at.values()))
