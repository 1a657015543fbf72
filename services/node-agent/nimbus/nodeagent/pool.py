"""Warm pools: generic sandboxes per runtime, booted ahead of need (OpenWhisk's stem cells).

A cold start takes one and only has to give it the function (boot.Booter.load). The refill loop
boots replacements in the background, one at a time so a burst of cold starts is not slowed by a
burst of boots, and drops pooled sandboxes that died. Sizes come from NIMBUS_WARM_POOL_SIZE.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping

from nimbus.common.clock import Clock
from nimbus.common.logs import kv
from nimbus.nodeagent.boot import Booter, Sandbox

log = logging.getLogger(__name__)

_CHECK_INTERVAL_S = 1.0
_MAX_BACKOFF_S = 30.0
# A refill waits this long after a take, so its boot (runc and an interpreter starting: tens of ms
# of CPU) does not compete with the cold start that took the sandbox and is still loading it.
_REFILL_DELAY_S = 0.15


def deficits(sizes: Mapping[str, int], idle: Mapping[str, int]) -> list[str]:
    """Runtimes to boot one sandbox for now, most wanting first. Pure."""
    short = [(sizes[r] - idle.get(r, 0), r) for r in sizes if sizes[r] > idle.get(r, 0)]
    return [r for _, r in sorted(short, key=lambda x: (-x[0], x[1]))]


class WarmPool:
    def __init__(self, booter: Booter, sizes: Mapping[str, int], clock: Clock) -> None:
        self._booter = booter
        self._sizes = {r: n for r, n in sizes.items() if n > 0 and booter.driver.supports(r)}
        self._clock = clock
        self._idle: dict[str, deque[Sandbox]] = {r: deque() for r in self._sizes}
        self._wake = asyncio.Event()
        self._closed = False
        self._taken_recently = False
        self._discards: set[asyncio.Task[None]] = set()

    def take(self, runtime: str) -> Sandbox | None:
        """A live pooled sandbox of the runtime, or None; the pool refills in the background."""
        idle = self._idle.get(runtime)
        while idle:
            sb = idle.popleft()
            self._taken_recently = True
            self._wake.set()
            if self._booter.driver.exit_code(sb.handle) is None:
                return sb
            self._discard(sb)
        return None

    def available(self, runtime: str) -> int:
        return len(self._idle.get(runtime, ()))

    def counts(self) -> dict[str, int]:
        return {r: len(q) for r, q in self._idle.items()}

    async def run(self) -> None:
        """Runs for the agent's life: keeps each runtime's pool full."""
        backoff = 0.5
        while not self._closed:
            self._drop_dead()
            wanted = deficits(self._sizes, self.counts())
            if not wanted:
                self._wake.clear()
                try:
                    async with asyncio.timeout(_CHECK_INTERVAL_S):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                continue
            runtime = wanted[0]
            if self._taken_recently:
                self._taken_recently = False
                await self._clock.sleep(_REFILL_DELAY_S)
            try:
                sb = await self._booter.boot(runtime)
            except Exception as err:
                log.warning(
                    "warm sandbox boot failed",
                    extra=kv(runtime=runtime, error=str(err), retry_s=backoff),
                )
                await self._clock.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF_S)
                continue
            backoff = 0.5
            if self._closed:
                await self._booter.discard(sb)
                return
            self._idle[runtime].append(sb)

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        pooled = [sb for q in self._idle.values() for sb in q]
        for q in self._idle.values():
            q.clear()
        await asyncio.gather(
            *(self._booter.discard(sb) for sb in pooled), *self._discards, return_exceptions=True
        )

    def _drop_dead(self) -> None:
        for q in self._idle.values():
            for sb in [sb for sb in q if self._booter.driver.exit_code(sb.handle) is not None]:
                q.remove(sb)
                log.warning("a warm sandbox died while pooled", extra=kv(sandbox_id=sb.sandbox_id))
                self._discard(sb)

    def _discard(self, sb: Sandbox) -> None:
        task = asyncio.ensure_future(self._booter.discard(sb))
        self._discards.add(task)
        task.add_done_callback(self._discards.discard)
