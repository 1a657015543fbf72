"""Per-call output capture on a real pipe: attribution, order, the cap and its marker, the tail."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nimbus.nodeagent.logcapture import MAX_CALL_BYTES, TAIL_BYTES, LogWriter, OutputCapture

pytestmark = pytest.mark.timeout(10)


class FixedClock:
    def now(self) -> float:
        return 1_700_000_000.25

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(w)


async def records(writer: LogWriter, path: Path) -> list[dict[str, str]]:
    await writer.flush()
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_output_is_tagged_per_call_in_order(tmp_path: Path, pipe: tuple[int, int]) -> None:
    r, w = pipe
    writer = LogWriter(tmp_path, FixedClock())
    cap = OutputCapture(r, "inst", writer)
    os.write(w, b"init line\n")
    cap.begin("req-1", "START RequestId: req-1")
    os.write(w, b"one\ntw")
    os.write(w, b"o\nno newline at the end")
    tail = cap.end(["END RequestId: req-1"], tail=True)
    assert tail.decode().splitlines() == [
        "START RequestId: req-1", "one", "two", "no newline at the end", "END RequestId: req-1"
    ]
    cap.begin("req-2", "START RequestId: req-2")
    assert cap.end(["END RequestId: req-2"]) == b""  # no tail unless asked
    cap.close()
    got = [(rec["request_id"], rec["type"], rec["message"]) for rec in await records(writer, tmp_path / "inst.jsonl")]
    assert got == [
        ("", "output", "init line"),
        ("req-1", "platform", "START RequestId: req-1"),
        ("req-1", "output", "one"),
        ("req-1", "output", "two"),
        ("req-1", "output", "no newline at the end"),
        ("req-1", "platform", "END RequestId: req-1"),
        ("req-2", "platform", "START RequestId: req-2"),
        ("req-2", "platform", "END RequestId: req-2"),
    ]


async def test_a_call_keeps_256_kb_and_says_what_it_dropped(tmp_path: Path, pipe: tuple[int, int]) -> None:
    r, w = pipe
    writer = LogWriter(tmp_path, FixedClock())
    cap = OutputCapture(r, "big", writer)
    cap.begin("req", "START")
    line = b"y" * 1023 + b"\n"
    sent = 0
    for _ in range(300):  # 300 KB in pipe-sized steps, read as they come
        os.write(w, line * 16)
        sent += len(line) * 16
        cap._read()
    tail = cap.end(["END"], tail=True).decode()
    assert len(tail.encode()) <= TAIL_BYTES
    marker = f"[nimbus] output truncated: {sent - MAX_CALL_BYTES} bytes over the 256 KB limit were dropped"
    assert tail.splitlines()[-2:] == [marker, "END"]
    cap.close()
    kept = [rec for rec in await records(writer, tmp_path / "big.jsonl") if rec["type"] == "output"]
    assert sum(len(rec["message"]) + 1 for rec in kept) == MAX_CALL_BYTES
    # The next call starts with a fresh allowance.
    assert all(rec["request_id"] == "req" for rec in kept)
