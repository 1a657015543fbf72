"""A call's result goes into its reply in place (server.fill_result): the same bytes as the reply
built around result_to_proto, whichever fields are set."""

from __future__ import annotations

import pytest
from nimbus.internal.v1 import nodeagent_pb2
from nimbus.nodeagent.server import fill_result, result_to_proto
from nimbus.nodeagent.spec import InvokeResult


@pytest.mark.parametrize(
    "result",
    [
        InvokeResult(b"", "", 0, 0, False, 0),
        InvokeResult(b"null", "", 57, 1, False, 0),
        InvokeResult(
            b'{"errorType": "Timeout"}', "Unhandled", 3_000_000, 3000, True, 12_345, b"tail\n"
        ),
    ],
)
def test_fill_result_writes_what_result_to_proto_builds(result: InvokeResult) -> None:
    built = nodeagent_pb2.StreamedInvokeResponse(call_id=7, result=result_to_proto(result))
    filled = nodeagent_pb2.StreamedInvokeResponse(call_id=7)
    fill_result(filled.result, result)
    assert filled.HasField("result")
    assert filled.SerializeToString() == built.SerializeToString()
    assert filled == built
