"""The log shipper's pure parts (batching, message ids, cursors) and its loop over files with an
in-memory publisher (a fake of the Publisher protocol)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nimbus.common.clock import FakeClock
from nimbus.common.errors import Unavailable
from nimbus.nodeagent.logcapture import LogSource, record
from nimbus.nodeagent.logship import (
    BATCH_BYTES,
    CURSORS_FILE,
    MAX_BACKOFF_S,
    LogShipper,
    batches,
    complete_lines,
    next_backoff,
    parse_cursors,
)

pytestmark = pytest.mark.timeout(10)

TS = "2026-01-01T00:00:00.000Z"


SOURCE = LogSource("ns", "fn", "1")


def line(message: str, source: LogSource = SOURCE, request_id: str = "r") -> bytes:
    return record(TS, "i1", source, request_id, "stdout", message)


@pytest.mark.parametrize(
    ("data", "limit", "want"),
    [
        (b"", 10, 0),
        (b"abc", 10, 0),  # a line still being written
        (b"ab\ncd", 10, 3),
        (b"ab\ncd\n", 10, 6),
        (b"ab\ncd\nef\n", 7, 6),  # at most limit ...
        (b"abcdefghij\nx\n", 4, 11),  # ... unless the first line alone is longer
        (b"abcdefghij", 4, 0),
    ],
)
def test_complete_lines(data: bytes, limit: int, want: int) -> None:
    assert complete_lines(data, limit) == want


def test_batches_group_by_function_skip_unassigned_and_keep_ids_stable() -> None:
    chunk = (
        line("pooled", LogSource())
        + line("a")
        + b"not json\n"
        + line("b")
        + line("bad", LogSource("n.s", "fn"))
    )
    got = batches("node-1", "i1", 100, chunk)
    assert [(b.subject, b.msg_id) for b in got] == [
        ("logs.ns.fn", f"node-1/i1/100-{100 + len(chunk)}")
    ]
    assert [json.loads(x)["message"] for x in got[0].data.splitlines()] == ["a", "b"]
    assert batches("node-1", "i1", 100, chunk) == got  # a re-send is recognised as one
    assert batches("node-1", "i1", 101, chunk)[0].msg_id != got[0].msg_id


@pytest.mark.parametrize(
    "odd",
    [
        b"",
        b"\n",
        b"  \n",
        b"1, 2\n",
        b'{"a": 1} {"b": 2}\n',
        b"[1\n",
        b'{"ts": ' + line("nested"),
        b"\xff\xfe\n",
        b"null\n",
    ],
)
def test_lines_that_are_not_one_record_each_are_skipped_alone(odd: bytes) -> None:
    """The lines are parsed as one JSON array when they can be: a line that is no record of its
    own, wherever it stands, must still cost only itself."""
    chunk = line("a") + odd + line("b") + odd + line("c")
    got = batches("n", "i", 0, chunk)
    assert [json.loads(x)["message"] for x in got[0].data.splitlines()] == ["a", "b", "c"]
    assert got[0].data == line("a") + line("b") + line("c")


def test_a_line_too_long_for_one_message_is_cut() -> None:
    got = batches("n", "i", 0, line("x" * (BATCH_BYTES + 10)))
    message = json.loads(got[0].data)["message"]
    assert len(got[0].data) < BATCH_BYTES and message.endswith("characters to ship it")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('{"a": 5, "b": 0}', {"a": 5, "b": 0}),
        ('{"a": -1, "b": "x"}', {}),
        ("[1]", {}),
        ("garbage", {}),
        ("", {}),
    ],
)
def test_parse_cursors(text: str, want: dict[str, int]) -> None:
    assert parse_cursors(text) == want


def test_backoff_doubles_to_a_cap() -> None:
    steps = [0.0]
    for _ in range(8):
        steps.append(next_backoff(steps[-1]))
    assert steps[:4] == [0.0, 0.5, 1.0, 2.0] and steps[-1] == MAX_BACKOFF_S


class FakePublisher:
    def __init__(self) -> None:
        self.messages: dict[str, tuple[str, bytes]] = {}
        self.down = False

    async def publish(self, subject: str, data: bytes, msg_id: str) -> bool:
        if self.down:
            raise Unavailable("NATS is down")
        duplicate = msg_id in self.messages
        self.messages.setdefault(msg_id, (subject, data))
        return duplicate

    def lines(self) -> list[str]:
        return [
            json.loads(x)["message"]
            for _, data in self.messages.values()
            for x in data.splitlines()
        ]


class FakeWriter:
    def __init__(self) -> None:
        self.written = asyncio.Event()
        self.open: set[str] = set()

    def finished(self, instance_id: str) -> bool:
        return instance_id not in self.open


async def test_ships_from_the_cursor_keeps_it_on_failure_and_deletes_finished_files(
    tmp_path: Path,
) -> None:
    pub, writer = FakePublisher(), FakeWriter()
    writer.open.add("i1")
    f = tmp_path / "i1.jsonl"
    f.write_bytes(line("one") + line("two") + b'{"partial')
    shipper = LogShipper(tmp_path, writer, pub, "node-1", FakeClock(0.0, advance_on_sleep=False))
    assert await shipper.ship() == 1
    assert pub.lines() == ["one", "two"]
    assert json.loads((tmp_path / CURSORS_FILE).read_text()) == {
        "i1": len(line("one") + line("two"))
    }

    with f.open("ab") as out:
        out.write(b'", "x": 1}\n' + line("three"))
    pub.down = True
    with pytest.raises(Unavailable):
        await shipper.ship()
    assert json.loads((tmp_path / CURSORS_FILE).read_text())["i1"] == len(line("one") + line("two"))

    pub.down = False
    # A new shipper (the agent restarted) resumes from the persisted cursor: nothing twice,
    # nothing lost.
    restarted = LogShipper(tmp_path, writer, pub, "node-1", FakeClock(0.0, advance_on_sleep=False))
    assert await restarted.ship() == 1
    assert pub.lines() == ["one", "two", "three"]
    assert f.exists()  # the instance still lives
    writer.open.clear()
    assert await restarted.ship() == 0
    assert not f.exists() and json.loads((tmp_path / CURSORS_FILE).read_text()) == {}


async def test_the_cursors_file_is_rewritten_in_place_and_stays_valid(tmp_path: Path) -> None:
    pub, writer = FakePublisher(), FakeWriter()
    shipper = LogShipper(tmp_path, writer, pub, "node-1", FakeClock(0.0, advance_on_sleep=False))
    names = [f"instance-{n:04d}" for n in range(250)]  # their cursors take more than a page
    writer.open.update(names)
    for name in names[:2]:
        (tmp_path / f"{name}.jsonl").write_bytes(line("one"))
    await shipper.ship()
    cursors = tmp_path / CURSORS_FILE
    inode = cursors.stat().st_ino
    assert parse_cursors(cursors.read_text()) == dict.fromkeys(names[:2], len(line("one")))

    for name in names:
        (tmp_path / f"{name}.jsonl").write_bytes(line("one") + line("two"))
    await shipper.ship()
    assert parse_cursors(cursors.read_text()) == dict.fromkeys(
        names, len(line("one") + line("two"))
    )
    assert cursors.stat().st_size > 4096  # replaced by a new file, not written in place

    writer.open.difference_update(names[1:])  # all but one finished: their files and cursors go
    await shipper.ship()
    assert parse_cursors(cursors.read_text()) == {names[0]: len(line("one") + line("two"))}
    writer.open.clear()
    await shipper.ship()
    assert json.loads(cursors.read_text()) == {}
    assert cursors.stat().st_size <= 4096 and cursors.stat().st_ino != inode
    inode = cursors.stat().st_ino
    (tmp_path / "late.jsonl").write_bytes(line("x"))
    writer.open.add("late")
    await shipper.ship()
    assert json.loads(cursors.read_text()) == {"late": len(line("x"))}  # the shorter text, padded
    assert cursors.stat().st_ino == inode


async def test_rounds_are_at_least_every_s_apart(tmp_path: Path) -> None:
    clock = FakeClock(0.0)  # time moves only when the shipper sleeps
    shipped_at: list[float] = []

    class TimedPublisher(FakePublisher):
        async def publish(self, subject: str, data: bytes, msg_id: str) -> bool:
            shipped_at.append(clock.t)
            return await super().publish(subject, data, msg_id)

    pub, writer = TimedPublisher(), FakeWriter()
    writer.open.add("i1")
    f = tmp_path / "i1.jsonl"
    f.write_bytes(line("one"))
    writer.written.set()
    task = asyncio.create_task(
        LogShipper(tmp_path, writer, pub, "node-1", clock, every_s=1.0).run()
    )
    try:
        while not shipped_at:
            await asyncio.sleep(0.001)
        # Written right after a round: it waits for the interval, not for the next write.
        with f.open("ab") as out:
            out.write(line("two"))
        writer.written.set()
        while len(shipped_at) < 2:
            await asyncio.sleep(0.001)
    finally:
        task.cancel()
    assert shipped_at == [0.0, 1.0]
    assert pub.lines() == ["one", "two"]
