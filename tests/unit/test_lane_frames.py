"""Framing of the invoke lane (nimbus.common.lane): pure logic, no sockets."""

from __future__ import annotations

import pytest
from nimbus.common import lane
from nimbus.internal.v1 import nodeagent_pb2


def call(i: int, payload: bytes = b"{}") -> nodeagent_pb2.StreamedInvokeRequest:
    return nodeagent_pb2.StreamedInvokeRequest(
        call_id=i,
        invoke=nodeagent_pb2.InstanceInvokeRequest(
            instance_id="i", request_id=f"r{i}", payload=payload
        ),
    )


def batch(calls: list[nodeagent_pb2.StreamedInvokeRequest]) -> nodeagent_pb2.InvokeBatchRequest:
    return nodeagent_pb2.InvokeBatchRequest(calls=calls)


def decode(bodies: list[bytes]) -> list[int]:
    return [
        c.call_id
        for body in bodies
        for c in nodeagent_pb2.InvokeBatchRequest.FromString(body).calls
    ]


def test_frames_survive_any_chunking() -> None:
    wire = lane.encode([call(1), call(2)], batch) + lane.encode([call(3)], batch)
    for size in (1, 2, 3, 5, 7, len(wire)):
        reader = lane.FrameReader()
        bodies: list[bytes] = []
        for at in range(0, len(wire), size):
            bodies += reader.feed(wire[at : at + size])
        assert decode(bodies) == [1, 2, 3]
        assert reader.buffered == 0


def test_a_partial_frame_waits_for_the_rest() -> None:
    wire = lane.encode([call(7)], batch)
    reader = lane.FrameReader()
    assert reader.feed(wire[:-1]) == []
    assert reader.buffered == len(wire) - 1
    assert decode(reader.feed(wire[-1:])) == [7]


def test_big_batches_are_split_into_several_frames_of_whole_messages() -> None:
    big = b'"' + b"x" * (lane.SPLIT_BYTES // 2) + b'"'
    wire = lane.encode([call(i, big) for i in range(5)], batch)
    bodies = lane.FrameReader().feed(wire)
    assert len(bodies) == 3  # 2 + 2 + 1: each frame closes once it passes SPLIT_BYTES
    assert decode(bodies) == [0, 1, 2, 3, 4]


def test_an_oversized_length_is_refused() -> None:
    reader = lane.FrameReader()
    with pytest.raises(lane.FrameError, match="over the limit"):
        reader.feed((lane.MAX_FRAME_BYTES + 1).to_bytes(4, "big") + b"x")


def test_a_batch_is_encoded_as_its_wrapper_would_be() -> None:
    calls = [call(1), call(2, b"x" * 300), call(3, b"y" * 70_000)]
    assert lane.encode(calls, batch) == lane.frame(batch(calls).SerializeToString())
    assert lane.encode([call(1)], batch) == lane.frame(batch([call(1)]).SerializeToString())


def test_a_wrapper_with_other_fields_is_serialized_whole() -> None:
    def response(
        results: list[nodeagent_pb2.InstanceInvokeResponse],
    ) -> nodeagent_pb2.StreamedInvokeResponse:
        return nodeagent_pb2.StreamedInvokeResponse(
            call_id=9, result=results[0] if results else None
        )

    result = nodeagent_pb2.InstanceInvokeResponse(payload=b"{}")
    assert lane.encode([result], response) == lane.frame(response([result]).SerializeToString())
