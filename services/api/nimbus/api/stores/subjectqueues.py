"""NATS adapter of the triggers API: makes a subject trigger's durable queue before the trigger is
stored (nimbus.common.subjectqueue). Connecting is lazy and bounded; any NATS failure is
Unavailable (503)."""

from __future__ import annotations

import asyncio

from nimbus.common import subjectqueue
from nimbus.common.errors import Unavailable
from nimbus.common.logstream import CALL_TIMEOUT_S, ERRORS, LogStreamConnection


class NatsSubjectQueues:
    def __init__(self, url: str, *, name: str, retention_h: float, max_mb: int) -> None:
        # The api's lazy NATS connection (it makes sure of the log stream too, as the api's
        # other NATS adapters do).
        self._conn = LogStreamConnection(url, name=name, retention_h=retention_h, max_mb=max_mb)

    async def ensure(self, namespace: str, trigger_id: str, subject: str) -> None:
        js = await self._conn.jetstream()
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S * 2):
                await subjectqueue.ensure(js, namespace, trigger_id, subject)
        except ERRORS as err:
            raise Unavailable(
                f"the subject queue (NATS) could not be made: {type(err).__name__}: {err}"
            ) from err

    async def close(self) -> None:
        await self._conn.close()
