"""The agent↔shim frame codec: round trips, partial reads, bad input, and the shim's copy."""

from __future__ import annotations

import importlib.util
import io
import json
import struct

import pytest
from nimbus.nodeagent import protocol
from nimbus.nodeagent.protocol import Frame, FrameDecoder, Kind, ProtocolError, encode, parse_frame
from nimbus.nodeagent.runtimes import PYTHON_BOOTSTRAP

pytestmark = pytest.mark.timeout(10)


def _bootstrap():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("nimbus_python_bootstrap", PYTHON_BOOTSTRAP)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [
    (Kind.READY, {"init_duration_us": 1234}, b""),
    (
        Kind.INVOKE,
        {
            "request_id": "r-1",
            "deadline_ms": 1_700_000_000_000,
            "function_name": "f",
            "function_version": "$LATEST",
            "memory_limit_mb": 128,
        },
        b'{"a": [1, 2, "\\u00e9"]}',
    ),
    (Kind.RESULT, {"request_id": "r-1", "duration_us": 7}, b"null"),
    (Kind.ERROR, {"request_id": "r-1", "duration_us": 7}, b'{"errorType":"ValueError"}'),
    (
        Kind.INIT_ERROR,
        {"errorType": "Runtime.ImportModuleError", "errorMessage": "x", "stackTrace": ["a\n"]},
        b"",
    ),
    (
        Kind.LOAD,
        {
            "task_root": "/var/task",
            "handler": "app.handler",
            "env": {"K": "v"},
            "memory_limit_mb": 128,
        },
        b"",
    ),
    (
        Kind.ERROR,
        {"request_id": "r-2", "duration_us": 9, "fatal": True},
        b'{"errorType":"Runtime.ExitError"}',
    ),
    (Kind.RESULT, {"request_id": "big"}, bytes(range(256)) * 4096),
]


@pytest.mark.parametrize(("kind", "header", "body"), CASES)
def test_round_trip(kind: Kind, header: dict, body: bytes) -> None:
    frames = FrameDecoder().feed(encode(kind, header, body))
    assert frames == [Frame(kind, header, body)]


def test_layout_is_prefix_header_body() -> None:
    data = encode(Kind.RESULT, {"duration_us": 1}, b"42")
    header_len, body_len = struct.unpack("!II", data[:8])
    assert json.loads(data[8 : 8 + header_len]) == {"type": "RESULT", "duration_us": 1}
    assert data[8 + header_len :] == b"42" and body_len == 2


@pytest.mark.parametrize("step", [1, 7, 4099])
def test_partial_reads(step: int) -> None:
    # Byte by byte over the small frames; the 1 MB one in odd-sized pieces (a million one-byte
    # feeds would make this test's run time depend on the machine's load).
    cases = CASES[:-1] if step == 1 else CASES
    stream = b"".join(encode(k, h, b) for k, h, b in cases)
    decoder = FrameDecoder()
    got: list[Frame] = []
    for i in range(0, len(stream), step):
        got += decoder.feed(stream[i : i + step])
    assert [(f.kind, f.header, f.body) for f in got] == cases
    assert decoder.pending == 0


def test_split_inside_prefix_then_many_frames_in_one_chunk() -> None:
    one, two = encode(Kind.RESULT, {"n": 1}, b"1"), encode(Kind.RESULT, {"n": 2}, b"2")
    decoder = FrameDecoder()
    assert decoder.feed(one[:3]) == []
    assert decoder.pending == 3
    frames = decoder.feed(one[3:] + two + two[:5])
    assert [f.header["n"] for f in frames] == [1, 2]
    assert decoder.pending == 5


@pytest.mark.parametrize(
    "data",
    [
        struct.pack("!II", 0, 0),  # no header
        struct.pack("!II", protocol.MAX_HEADER_BYTES + 1, 0),
        struct.pack("!II", 10, protocol.MAX_FRAME_BYTES),
        struct.pack("!II", 4, 0) + b"nope",  # not JSON
        struct.pack("!II", 2, 0) + b"{}",  # no type
        struct.pack("!II", 15, 0) + b'{"type":"NOPE"}',
        struct.pack("!II", 12, 0) + b'{"type":[1]}',
        struct.pack("!II", 3, 0) + b"[1]",
    ],
)
def test_bad_frames_raise(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        FrameDecoder().feed(data)


@pytest.mark.parametrize("request_id", ["r-1", "", 'q"u\\o', "é✓🚀", "\x00\n"])
@pytest.mark.parametrize(
    ("name", "version", "memory_mb"), [("f", "$LATEST", 128), ("fn-ü", "7", 10240)]
)
def test_invoke_encoder_writes_what_encode_writes(
    request_id: str, name: str, version: str, memory_mb: int
) -> None:
    header = {
        "request_id": request_id,
        "deadline_ms": 1_700_000_000_123,
        "function_name": name,
        "function_version": version,
        "memory_limit_mb": memory_mb,
    }
    frames = protocol.InvokeEncoder(name, version, memory_mb)
    assert frames.encode(request_id, 1_700_000_000_123, b"{}") == encode(Kind.INVOKE, header, b"{}")
    assert FrameDecoder().feed(frames.encode(request_id, 5, b"")) == [
        Frame(Kind.INVOKE, {**header, "deadline_ms": 5})
    ]
    with pytest.raises(ProtocolError):
        frames.encode(request_id, 5, b"x" * protocol.MAX_FRAME_BYTES)


def test_encode_refuses_oversized_body() -> None:
    with pytest.raises(ProtocolError):
        encode(Kind.RESULT, {}, b"x" * protocol.MAX_FRAME_BYTES)


@pytest.mark.parametrize(("kind", "header", "body"), CASES)
def test_shim_codec_agrees_with_agent(kind: Kind, header: dict, body: bytes) -> None:
    shim = _bootstrap()
    # shim → agent
    assert FrameDecoder().feed(shim.encode(kind.value, header, body)) == [Frame(kind, header, body)]
    # agent → shim
    assert shim.read_frame(io.BytesIO(encode(kind, header, body))) == (kind.value, header, body)


def test_shim_read_frame_eof() -> None:
    shim = _bootstrap()
    assert shim.read_frame(io.BytesIO(b"")) is None
    assert shim.read_frame(io.BytesIO(encode(Kind.INVOKE, {}, b"{}")[:-1])) is None


@pytest.mark.parametrize(
    "header",
    [
        b'{"type":"RESULT","request_id":"abc-1","duration_us":57}',
        b'{"type":"ERROR","request_id":"","duration_us":0}',
        b'{"type":"ERROR","request_id":"a b!#[]~","duration_us":123456789012345678}',
        b'{"type":"RESULT","request_id":"a\\"b\\\\c","duration_us":5}',
        b'{"type":"RESULT","request_id":"\\u00e9","duration_us":5}',
        b'{"type":"ERROR","request_id":"x","duration_us":5,"fatal":true}',
        b'{"type":"RESULT","duration_us":5,"request_id":"x"}',
        b'{"type":"RESULT","request_id":"x","duration_us":-5}',
    ],
)
def test_a_reply_header_reads_as_json_loads_reads_it(header: bytes) -> None:
    expected = json.loads(header)
    kind = expected.pop("type")
    frame = parse_frame(header, b"body")
    assert (frame.kind, frame.header, frame.body) == (kind, expected, b"body")
    assert [type(v) for v in frame.header.values()] == [type(v) for v in expected.values()]


def test_a_reply_header_json_refuses_is_still_refused() -> None:
    with pytest.raises(ProtocolError):
        parse_frame(b'{"type":"RESULT","request_id":"x","duration_us":05}', b"")
