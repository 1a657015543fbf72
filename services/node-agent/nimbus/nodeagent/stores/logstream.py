"""The node-agent's JetStream adapter for function logs: publishes to the namespaces' log streams
(made on a namespace's first line) and to NIMBUS_USAGE, with de-duplication, over the shared lazy
connection (nimbus.common.logstream). When NATS cannot be reached a publish raises Unavailable, so
the shipper backs off and keeps its files."""

from __future__ import annotations

import nats.errors
import nats.js.errors
from nimbus.common import logstream
from nimbus.common.errors import Unavailable
from nimbus.common.logstream import CALL_TIMEOUT_S, ERRORS, LogStreamConnection

_MSG_ID = "Nats-Msg-Id"


class LogStreamPublisher:
    def __init__(self, url: str, *, name: str, retention_h: float, max_mb: int) -> None:
        self._conn = LogStreamConnection(url, name=name, retention_h=retention_h, max_mb=max_mb)

    async def publish(self, subject: str, data: bytes, msg_id: str) -> bool:
        """Stores one message; True when JetStream already had it (a re-send after a restart)."""
        js = await self._conn.jetstream()
        for attempt in (1, 2):
            try:
                ack = await js.publish(
                    subject, data, timeout=CALL_TIMEOUT_S, headers={_MSG_ID: msg_id}
                )
                return bool(ack.duplicate)
            except (nats.js.errors.NoStreamResponseError, nats.errors.NoRespondersError) as err:
                # No stream takes the subject: the namespace's first line (or a wiped NATS).
                if attempt == 2:
                    raise Unavailable(f"NATS publish failed: {type(err).__name__}: {err}") from err
                try:
                    if subject.startswith(f"{logstream.SUBJECT_PREFIX}."):
                        retention_h, max_mb = self._conn.retention
                        await logstream.ensure_namespace_stream(
                            js, logstream.namespace_of(subject), retention_h, max_mb
                        )
                    else:
                        self._conn.stream_gone()
                        js = await self._conn.jetstream()
                except ERRORS as err2:
                    raise Unavailable(
                        f"NATS stream setup failed: {type(err2).__name__}: {err2}"
                    ) from err2
            except ERRORS as err:
                raise Unavailable(f"NATS publish failed: {type(err).__name__}: {err}") from err
        raise AssertionError("unreachable")

    async def close(self) -> None:
        await self._conn.close()
