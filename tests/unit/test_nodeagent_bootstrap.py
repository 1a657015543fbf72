"""The Python shim's call path, run in-process: results, errors, async handlers, context."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from types import ModuleType
from typing import Any

import pytest
from nimbus.nodeagent.runtimes import PYTHON_BOOTSTRAP

pytestmark = pytest.mark.timeout(10)


@pytest.fixture(scope="module")
def shim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nimbus_python_bootstrap_calls", PYTHON_BOOTSTRAP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HEADER = {
    "request_id": "req-1",
    "deadline_ms": 2**50,
    "function_name": "fn",
    "function_version": "3",
    "memory_limit_mb": 256,
}


def call(shim: ModuleType, handler: Any, body: bytes = b'{"x": 1}') -> tuple[str, Any, int]:
    kind, out, duration_us = shim.invoke(handler, shim.Loop(), dict(HEADER), body)
    return kind, json.loads(out), duration_us


def test_result_is_json(shim: ModuleType) -> None:
    assert call(shim, lambda event, context: {"got": event})[:2] == ("RESULT", {"got": {"x": 1}})


def test_empty_event_is_empty_object(shim: ModuleType) -> None:
    assert call(shim, lambda event, context: event, b"")[:2] == ("RESULT", {})


def test_context(shim: ModuleType) -> None:
    def handler(event: Any, context: Any) -> Any:
        return [
            context.request_id,
            context.aws_request_id,
            context.function_name,
            context.function_version,
            context.memory_limit_mb,
            context.get_remaining_time_ms() > 0,
        ]

    assert call(shim, handler)[1] == ["req-1", "req-1", "fn", "3", 256, True]


def test_exception_becomes_error_object(shim: ModuleType) -> None:
    def handler(event: Any, context: Any) -> Any:
        raise ValueError("bad input")

    kind, err, _ = call(shim, handler)
    assert kind == "ERROR"
    assert err["errorType"] == "ValueError" and err["errorMessage"] == "bad input"
    assert any("raise ValueError" in line for line in err["stackTrace"])
    assert not any("runtimes/python/bootstrap.py" in line for line in err["stackTrace"])


def test_unserialisable_result_is_marshal_error(shim: ModuleType) -> None:
    kind, err, _ = call(shim, lambda event, context: object())
    assert kind == "ERROR" and err["errorType"] == "Runtime.MarshalError"


def test_bad_json_event_is_unmarshal_error(shim: ModuleType) -> None:
    kind, err, _ = call(shim, lambda event, context: event, b"{nope")
    assert kind == "ERROR" and err["errorType"] == "Runtime.UnmarshalError"


def test_async_handler(shim: ModuleType) -> None:
    async def handler(event: Any, context: Any) -> Any:
        await asyncio.sleep(0)
        return event["x"] + 1

    assert call(shim, handler)[:2] == ("RESULT", 2)


def test_load_handler_errors(shim: ModuleType) -> None:
    with pytest.raises(shim.InitFailure) as info:
        shim.load_handler("no_such_module_xyz.handler")
    assert info.value.error["errorType"] == "Runtime.ImportModuleError"
    with pytest.raises(shim.InitFailure) as info:
        shim.load_handler("json.no_such_handler")
    assert info.value.error["errorType"] == "Runtime.HandlerNotFound"
    assert shim.load_handler("json.dumps") is json.dumps
