"""The idle reaper: destroys instances idle past NIMBUS_INSTANCE_IDLE_S and
those whose process died."""

from __future__ import annotations

import logging
from typing import Protocol

from nimbus.common.clock import Clock
from nimbus.common.logs import kv
from nimbus.common.loops import loop_run
from nimbus.nodeagent.policy import idle_victims, reap_interval_s

log = logging.getLogger(__name__)


class Reapable(Protocol):
    def idle_since(self) -> dict[str, float]:
        """Idle (READY, no call waiting or running) instance ids → last use, monotonic seconds."""
        ...

    def exited(self) -> list[str]:
        """Idle instances whose sandbox exited on its own (crashed, OOM-killed)."""
        ...

    async def reap(self, instance_id: str, *, failed: bool = False) -> bool:
        """Destroys the instance if it is still idle; whether it did."""
        ...


async def reap_once(target: Reapable, now: float, idle_s: float) -> list[str]:
    reaped: list[str] = []
    for instance_id in target.exited():
        if await target.reap(instance_id, failed=True):
            log.warning("instance exited while idle", extra=kv(instance_id=instance_id))
            reaped.append(instance_id)
    for instance_id in idle_victims(target.idle_since(), now, idle_s):
        if await target.reap(instance_id):
            reaped.append(instance_id)
    if reaped:
        log.info("reaped instances", extra=kv(instance_ids=reaped))
    return reaped


async def reap_loop(target: Reapable, clock: Clock, idle_s: float) -> None:
    """Runs for the agent's life; a failed step is logged and retried at the next interval."""
    interval = reap_interval_s(idle_s)
    while True:
        await clock.sleep(interval)
        try:
            with loop_run("reaper"):
                await reap_once(target, clock.monotonic(), idle_s)
        except Exception:
            log.exception("reaper step failed")
