"""Framing of the node's invoke lane (NodeAgent.GetInvokeLane): protobuf messages on a plain TCP
connection, each preceded by its length as 4 big-endian bytes.

The lane exists for speed: one message round trip over an HTTP/2 stream in grpc.aio costs about
300 µs of latency and 400 µs of CPU here, the same over a framed asyncio connection about 85 µs and
100 µs. Both ends write what is ready within one turn of the event loop as one frame.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

_LENGTH = struct.Struct(">I")
HEADER_BYTES = _LENGTH.size
# A frame holds whole messages; a sender starts a new frame once one passes SPLIT_BYTES, so a frame
# is at most SPLIT_BYTES plus one message (an event or a result is at most a few MB).
SPLIT_BYTES = 4 << 20
MAX_FRAME_BYTES = 64 << 20


class FrameError(ValueError):
    """The peer sent something that is not a frame of this protocol."""


def frame(body: bytes) -> bytes:
    return _LENGTH.pack(len(body)) + body


class FrameReader:
    """Cuts a byte stream into frame bodies, whatever the chunks it arrives in."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        if not buf and len(data) >= HEADER_BYTES:
            # The usual case: the chunk is exactly one frame.
            (size,) = _LENGTH.unpack_from(data)
            if len(data) == HEADER_BYTES + size and size <= MAX_FRAME_BYTES:
                return [data[HEADER_BYTES:]]
        buf += data
        out: list[bytes] = []
        start = 0
        end = len(buf)
        while end - start >= HEADER_BYTES:
            (size,) = _LENGTH.unpack_from(buf, start)
            if size > MAX_FRAME_BYTES:
                raise FrameError(f"a frame of {size} bytes is over the limit of {MAX_FRAME_BYTES}")
            if end - start - HEADER_BYTES < size:
                break
            body_at = start + HEADER_BYTES
            out.append(bytes(buf[body_at : body_at + size]))
            start = body_at + size
        if start:
            del buf[:start]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# wrap → the tag of its one repeated message field (b"" when wrap's message has other fields).
_TAGS: dict[Callable[[list[Any]], Message], bytes] = {}


def _repeated_tag(wrap: Callable[[list[M]], Message]) -> bytes:
    tag = _TAGS.get(wrap)
    if tag is None:
        fields = wrap([]).DESCRIPTOR.fields
        only = fields[0] if len(fields) == 1 else None
        repeated_message = only is not None and only.is_repeated and only.type == only.TYPE_MESSAGE
        tag = _TAGS[wrap] = (
            _varint(only.number << 3 | 2) if only is not None and repeated_message else b""
        )
    return tag


def encode(items: Sequence[M], wrap: Callable[[list[M]], Message]) -> bytes:
    """The frames that carry items: one, or several when together they pass SPLIT_BYTES.

    When wrap's message is only the repeated field that holds the items (InvokeBatchRequest,
    InvokeBatchResponse), its encoding is each item's as a length-delimited field, so the items are
    serialized once and joined, rather than copied into a wrapper first (a third of the cost)."""
    tag = _repeated_tag(wrap)
    if not tag:
        return _encode_wrapped(items, wrap)
    out: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for item in items:
        body = item.SerializeToString()
        length = len(body)
        group += (tag, bytes((length,)) if length < 0x80 else _varint(length), body)
        size += length
        if size >= SPLIT_BYTES:
            out.append(frame(b"".join(group)))
            group, size = [], 0
    if group:
        out.append(frame(b"".join(group)))
    return out[0] if len(out) == 1 else b"".join(out)


def _encode_wrapped(items: Sequence[M], wrap: Callable[[list[M]], Message]) -> bytes:
    out: list[bytes] = []
    group: list[M] = []
    size = 0
    for item in items:
        group.append(item)
        size += item.ByteSize()
        if size >= SPLIT_BYTES:
            out.append(frame(wrap(group).SerializeToString()))
            group, size = [], 0
    if group:
        out.append(frame(wrap(group).SerializeToString()))
    return b"".join(out)


class FrameWriter(Generic[M]):
    """What one end of a lane sends: messages put within one turn of the event loop go out as the
    frames of one write."""

    __slots__ = ("_wrap", "_transport", "_queued", "_scheduled")

    def __init__(self, wrap: Callable[[list[M]], Message]) -> None:
        self._wrap = wrap
        self._transport: asyncio.Transport | None = None
        self._queued: list[M] = []
        self._scheduled = False

    def attach(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def put(self, msg: M) -> None:
        self._queued.append(msg)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def drop(self) -> None:
        self._queued = []

    @property
    def sending(self) -> bool:
        """Something is put and not yet written."""
        return self._scheduled or bool(self._queued)

    def _flush(self) -> None:
        self._scheduled = False
        queued, self._queued = self._queued, []
        if queued and self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode(queued, self._wrap))
