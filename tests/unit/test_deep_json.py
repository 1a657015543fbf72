"""JSON nested past the decoder's limit is a client's mistake (400 or a plain body), never an
internal error: the C decoder raises RecursionError, not ValueError, for it."""

from __future__ import annotations

import pytest
from nimbus.common.errors import InvalidArgument
from nimbus.invoker.sync.invoke import InvokeResult, check_event
from nimbus.invoker.triggers.payloads import http_api_response, rest_response
from nimbus.invoker.triggers.subject import subject_event

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_deep_event_is_invalid_argument_naming_the_body() -> None:
    with pytest.raises(InvalidArgument, match=r"^body: the event is nested too deeply"):
        check_event(DEEP)


def test_a_deep_subject_message_becomes_a_wrapped_body() -> None:
    event = subject_event("orders", DEEP)
    assert event.startswith(b'{"subject": "orders", "body": "[[[')


def test_a_deep_function_response_is_passed_through_as_the_body() -> None:
    result = InvokeResult("r-1", DEEP, "", 1, 1, False, "$LATEST")
    for shape in (rest_response, http_api_response):
        res = shape(result)
        assert res.status == 200 and res.body == DEEP
