"""Structured JSON log lines, one logger per module, request context from contextvars.

A line logged while a request runs carries its trace_id (nimbus.common.tracing keeps the request's
span current in the handler's task), so `grep <trace_id> $NIMBUS_HOME/logs/*` follows one request
through every service; request_id, namespace and function where the service knows them."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from opentelemetry import trace

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
namespace_var: contextvars.ContextVar[str] = contextvars.ContextVar("namespace", default="")
function_var: contextvars.ContextVar[str] = contextvars.ContextVar("function", default="")

_REPLICA = ""


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "replica": _REPLICA,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, var in (
            ("request_id", request_id_var),
            ("namespace", namespace_var),
            ("function", function_var),
        ):
            value = var.get()
            if value:
                line[key] = value
        trace_id = trace.get_current_span().get_span_context().trace_id
        if trace_id:
            line["trace_id"] = f"{trace_id:032x}"
        fields = getattr(record, "fields", None)
        if fields:
            line.update(fields)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(replica: str, level: str) -> None:
    global _REPLICA
    _REPLICA = replica
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aetcd and grpc are chatty at INFO about reconnects we already log ourselves.
    logging.getLogger("aetcd").setLevel(logging.WARNING)


def bind_request(request_id: str, namespace: str = "", function: str = "") -> None:
    """Names the request in every line logged from this task on: a gRPC handler and an async
    event each run in a task of their own, so nothing needs resetting."""
    request_id_var.set(request_id)
    if namespace:
        namespace_var.set(namespace)
    if function:
        function_var.set(function)


def kv(**fields: Any) -> dict[str, Any]:
    """`log.info("msg", extra=kv(a=1))` attaches structured fields to one line."""
    return {"fields": fields}
