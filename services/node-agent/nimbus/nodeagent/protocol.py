"""The framed protocol between the node-agent and the shim inside an instance: pure encode/decode.

One persistent Unix stream connection per instance. The agent listens on HOME/.../<instance_id>.sock
and the shim connects once at start. Every message is one frame:

    offset 0   u32 big-endian  header_len
    offset 4   u32 big-endian  body_len
    offset 8   header          UTF-8 JSON object, always with "type"
    8+hlen     body            raw bytes, passed through untouched (event / result JSON)

Keeping the body out of the JSON header means an event or a result is never re-encoded or escaped,
and the fixed 8-byte prefix lets a reader take a frame with two exact reads. A writer sends a whole
frame in one write (prefix, header and body joined first) so a frame never costs extra syscalls.

Messages. Up to the function's instance_concurrency INVOKEs may be outstanding on a connection
(1 by default); each reply names its call's request_id, replies come in any order, and the agent
never has the same request_id outstanding twice on one connection:

    agent → shim, once: the sandbox starts generic (a warm-pool "stem cell") and waits for this
        LOAD        {"task_root", "handler", "env": {str: str}, "namespace", "function_name",
                     "function_version", "memory_limit_mb", "function_arn", "log_group_name",
                     "log_stream_name", "instance_concurrency"}
                    (env already holds what Lambda sets: AWS_LAMBDA_*, AWS_REGION, _HANDLER, ...)
    shim → agent, once after importing the handler:
        READY       {"init_duration_us": int}
        INIT_ERROR  {"errorType": str, "errorMessage": str, "stackTrace": [str]}
                    (then the shim exits)
    agent → shim, per call:
        INVOKE      {"request_id", "deadline_ms" (epoch ms), "function_name", "function_version",
                     "memory_limit_mb"}                          body: the event as JSON
    shim → agent, per call:
        RESULT      {"request_id", "duration_us"}               body: the return value as JSON
        ERROR       {"request_id", "duration_us", "fatal"?}     body: {"errorType", "errorMessage",
                                                                       "stackTrace"}
                    The python3.11 and nodejs20 shims also write the error to the function's log
                    (stderr) as Lambda's runtimes do, and so for INIT_ERROR.
                    "fatal": true means the runtime cannot take another call (a custom runtime's
                    process died): the agent replaces the instance, ending the other calls in
                    flight on it.

The shims carry their own copies of the codec (runtimes/python/bootstrap.py, also used by the
provided runtime, and runtimes/node/bootstrap.js; they run outside our venv);
tests/unit/test_nodeagent_protocol.py checks that they agree with this one.
"""

from __future__ import annotations

import json
import json.encoder
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

PREFIX = struct.Struct("!II")
# The gRPC message limit (service.MAX_MESSAGE_BYTES) bounds payloads anyway;
# this bounds a corrupt prefix.
MAX_FRAME_BYTES = 96 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024


class Kind(StrEnum):
    LOAD = "LOAD"
    READY = "READY"
    INIT_ERROR = "INIT_ERROR"
    INVOKE = "INVOKE"
    RESULT = "RESULT"
    ERROR = "ERROR"


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame;
    the connection cannot be trusted after it."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    header: dict[str, Any]
    body: bytes = b""


# json.dumps(..., separators=(",", ":")) without making an encoder at every frame.
_dumps = json.JSONEncoder(separators=(",", ":")).encode
_enc = json.encoder.encode_basestring_ascii
# Kind(name) for the names that are valid, without the Enum call.
_KINDS = {k.value: k for k in Kind}
# A reply's header as the shims write it (json.dumps with separators=(",", ":"), JSON.stringify):
# {"type":"RESULT"|"ERROR","request_id":"...","duration_us":N}, with a request id of printable ASCII
# without '"' or '\\' (so nothing in it is escaped). json.loads reads exactly these fields from it;
# this reads them at a third of its cost (every call's reply). Any other header goes to json.loads.
_REPLY = re.compile(
    rb'\{"type":"(RESULT|ERROR)","request_id":"([\x20\x21\x23-\x5b\x5d-\x7e]*)","duration_us":(0|[1-9][0-9]{0,17})\}'
)
_REPLY_KINDS = {b"RESULT": Kind.RESULT, b"ERROR": Kind.ERROR}


def encode(kind: Kind, header: Mapping[str, Any] | None = None, body: bytes = b"") -> bytes:
    return _frame(_dumps({"type": kind.value, **(header or {})}).encode(), body)


class InvokeEncoder:
    """One instance's INVOKE frames, as encode(Kind.INVOKE, {"request_id", "deadline_ms",
    "function_name", "function_version", "memory_limit_mb"}, body) writes them: the fields that are
    the same for every call on the instance are encoded once."""

    __slots__ = ("_tail",)

    def __init__(self, function_name: str, function_version: str, memory_limit_mb: int) -> None:
        fixed = {
            "function_name": function_name,
            "function_version": function_version,
            "memory_limit_mb": memory_limit_mb,
        }
        self._tail = "," + _dumps(fixed)[1:]

    def encode(self, request_id: str, deadline_ms: int, body: bytes) -> bytes:
        head = (
            '{"type":"INVOKE","request_id":'
            + _enc(request_id)
            + ',"deadline_ms":'
            + str(deadline_ms)
            + self._tail
        )
        return _frame(head.encode(), body)


def _frame(head: bytes, body: bytes) -> bytes:
    if len(head) > MAX_HEADER_BYTES or len(head) + len(body) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame too large: header {len(head)} B, body {len(body)} B")
    return b"".join((PREFIX.pack(len(head), len(body)), head, body))


def _checked(header_len: int, body_len: int) -> tuple[int, int]:
    if header_len == 0 or header_len > MAX_HEADER_BYTES or header_len + body_len > MAX_FRAME_BYTES:
        raise ProtocolError(f"bad frame prefix: header {header_len} B, body {body_len} B")
    return header_len, body_len


def parse_frame(header_bytes: bytes, body: bytes) -> Frame:
    reply = _REPLY.fullmatch(header_bytes)
    if reply is not None:
        kind_name, request_id, duration_us = reply.groups()
        return Frame(
            _REPLY_KINDS[kind_name],
            {"request_id": request_id.decode(), "duration_us": int(duration_us)},
            body,
        )
    try:
        header = json.loads(header_bytes)
        name = header.pop("type")
        kind = _KINDS.get(name) if type(name) is str else None
        if kind is None:
            kind = Kind(name)  # raises ValueError
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ProtocolError(f"bad frame header: {err}") from None
    return Frame(kind, header, body)


class FrameDecoder:
    """Incremental decoder for a byte stream that arrives in arbitrary pieces."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        # Whole frames in a fresh chunk (the usual case) are parsed from it without buffering.
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            buf = self._buf
        else:
            buf = data
        frames: list[Frame] = []
        pos, size = 0, len(buf)
        while size - pos >= PREFIX.size:
            header_len, body_len = _checked(*PREFIX.unpack_from(buf, pos))
            head_end = pos + PREFIX.size + header_len
            end = head_end + body_len
            if size < end:
                break
            frames.append(
                parse_frame(bytes(buf[pos + PREFIX.size : head_end]), bytes(buf[head_end:end]))
            )
            pos = end
        if buf is self._buf:
            del self._buf[:pos]
        elif pos < size:
            self._buf += buf[pos:]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered."""
        return len(self._buf)
