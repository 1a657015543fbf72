"""What a sync invoke tells its caller besides the result: the x-nimbus-* headers, and the `log`
option that asks for the log tail. Shared by the gRPC adapter (as initial metadata, which the
gateway turns into headers) and the REST listener (as headers), so both say the same."""

from __future__ import annotations

import base64

from nimbus.common import tracing
from nimbus.common.errors import InvalidArgument
from nimbus.invoker.sync.invoke import InvokeResult

DEFAULT_DEADLINE_S = 900.0
# Sent by the caller of invokeAsync: the same key within 10 minutes gets the first invocation.
IDEMPOTENCY_HEADER = "x-nimbus-idempotency-key"


def wants_log_tail(log: str) -> bool:
    mode = log.lower()
    if mode not in ("", "none", "tail"):
        raise InvalidArgument(f"log: {log!r} must be 'tail', 'none' or left out")
    return mode == "tail"


def reply_headers(result: InvokeResult, log_tail: bool) -> list[tuple[str, str]]:
    headers = [
        ("x-nimbus-request-id", result.request_id),
        ("x-nimbus-cold-start", "true" if result.cold_start else "false"),
        ("x-nimbus-billed-ms", str(result.billed_ms)),
        ("x-nimbus-executed-version", result.executed_version),
        # The handler's own run time as the instance measured it: end-to-end minus this is the
        # platform's overhead.
        ("x-nimbus-duration-us", str(result.duration_us)),
        # grep it in $NIMBUS_HOME/logs, or look it up in the trace backend.
        (tracing.TRACE_ID_HEADER, tracing.current_trace_id()),
    ]
    if log_tail:
        headers.append(("x-nimbus-log-tail", base64.b64encode(result.log_tail).decode()))
    if result.cold_start and result.init_duration_us:
        headers.append(("x-nimbus-init-duration-us", str(result.init_duration_us)))
    if result.function_error:
        headers.append(("x-nimbus-function-error", result.function_error))
    return headers
