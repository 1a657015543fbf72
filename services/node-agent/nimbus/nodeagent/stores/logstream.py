"""The node-agent's JetStream adapter for function logs: publishes to NIMBUS_LOGS with
de-duplication over the shared lazy connection (nimbus.common.logstream). When NATS cannot be
reached a publish raises Unavailable, so the shipper backs off and keeps its files."""

from __future__ import annotations

from nimbus.common.errors import Unavailable
from nimbus.common.logstream import CALL_TIMEOUT_S, ERRORS, LogStreamConnection

_MSG_ID = "Nats-Msg-Id"


class LogStreamPublisher:
    def __init__(self, url: str, *, name: str, retention_h: float, max_mb: int) -> None:
        self._conn = LogStreamConnection(url, name=name, retention_h=retention_h, max_mb=max_mb)

    async def publish(self, subject: str, data: bytes, msg_id: str) -> bool:
        """Stores one message; True when JetStream already had it (a re-send after a restart)."""
        js = await self._conn.jetstream()
        try:
            ack = await js.publish(subject, data, timeout=CALL_TIMEOUT_S, headers={_MSG_ID: msg_id})
        except ERRORS as err:
            raise Unavailable(f"NATS publish failed: {type(err).__name__}: {err}") from err
        return bool(ack.duplicate)

    async def close(self) -> None:
        await self._conn.close()
