"""Structured JSON log lines, one logger per module, request context from contextvars."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

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
        for key, var in (("request_id", request_id_var), ("namespace", namespace_var), ("function", function_var)):
            value = var.get()
            if value:
                line[key] = value
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


def kv(**fields: Any) -> dict[str, Any]:
    """`log.info("msg", extra=kv(a=1))` attaches structured fields to one line."""
    return {"fields": fields}
