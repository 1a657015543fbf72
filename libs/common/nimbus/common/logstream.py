"""The function-log stream on JetStream, shared by its writer (node-agent) and readers (api).

NIMBUS_LOGS holds subjects `logs.<namespace>.<function>`; both names are valid subject tokens
(namespace and function names match [A-Za-z][A-Za-z0-9_-]*). A message body is JSON lines, one
record per line, many records of one function per message, so a busy node publishes a message
per function per flush instead of one per line:

    {"ts": "2026-11-27T01:02:03.456Z", "namespace", "function", "version", "request_id",
     "stream": "stdout"|"stderr"|"platform", "message", "instance_id"}

The REPORT record of each call also carries a structured "report" object, so no consumer parses
text: {"duration_ms", "billed_ms", "memory_mb", "max_memory_used_mb", "cold_start",
"init_duration_ms", "error"}.
"""

from __future__ import annotations

import nats.js.errors
from nats.js import api
from nats.js.client import JetStreamContext

STREAM = "NIMBUS_LOGS"
SUBJECT_PREFIX = "logs"
# Writers publish with Nats-Msg-Id; a node-agent that restarts within this window re-sends a batch
# without duplicating it.
DUPLICATE_WINDOW_S = 600.0


def subject(namespace: str, function: str) -> str:
    return f"{SUBJECT_PREFIX}.{namespace}.{function}"


def stream_config(retention_h: float, max_mb: int) -> api.StreamConfig:
    max_age_s = retention_h * 3600.0
    return api.StreamConfig(
        name=STREAM,
        subjects=[f"{SUBJECT_PREFIX}.>"],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=max_age_s,
        max_bytes=max_mb * 1024 * 1024,
        # JetStream refuses a duplicate window longer than the stream's max age.
        duplicate_window=min(DUPLICATE_WINDOW_S, max_age_s),
        discard=api.DiscardPolicy.OLD,
    )


async def ensure_stream(js: JetStreamContext, retention_h: float, max_mb: int) -> None:
    """Creates or updates the stream; every writer and reader calls it at (re)connect."""
    config = stream_config(retention_h, max_mb)
    try:
        await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)
