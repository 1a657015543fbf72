"""The node-agent's log shipper against a real nats-server: records reach the log streams in batches
and read back through the api's log store; a shipper killed with SIGKILL mid-backlog is followed by
one that resumes from the persisted cursor with nothing lost; NATS down and back is retried; a noisy
namespace outgrows only its own budget."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nimbus.api.stores.logstream import JetStreamLogStore
from nimbus.common.clock import SystemClock
from nimbus.common.errors import Unavailable
from nimbus.nodeagent.logcapture import LogSource, LogWriter
from nimbus.nodeagent.logship import CURSORS_FILE, LogShipper
from nimbus.nodeagent.stores.logstream import LogStreamPublisher

from tests.support import until
from tests.support.servers import NatsServer

PLAINTEXT_ENV = {**os.environ, "NIMBUS_ALLOW_PLAINTEXT": "1"}  # the shipper's own process too

pytestmark = pytest.mark.timeout(180)

SOURCE = LogSource("ns", "shipfn", "1")


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A private nats-server, for the test that kills it."""
    server = NatsServer(tmp_path / "js").start()
    try:
        yield server
    finally:
        server.kill9()


async def stored_messages(url: str, function: str) -> list[dict[str, object]]:
    store = JetStreamLogStore(url, name="test-reader", retention_h=1, max_mb=64)
    try:
        return [
            json.loads(line)
            async for b in store.read(f"logs.ns.{function}", 0.0)
            for line in b.data.splitlines()
        ]
    finally:
        await store.close()


async def write_lines(
    logs_dir: Path, instance_id: str, messages: list[str], source: LogSource = SOURCE
) -> None:
    writer = LogWriter(logs_dir, SystemClock())
    writer.append(instance_id, source, "req-1", "stdout", messages)
    await writer.flush()


async def test_records_are_shipped_in_batches_and_read_back(tmp_path: Path, nats_url: str) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    messages = [f"line {i} " + "x" * 200 for i in range(5000)]  # ~1.3 MB: three or more batches
    await write_lines(logs_dir, "inst-a", messages)
    await write_lines(logs_dir, "pooled", ["not a function's"], LogSource())
    publisher = LogStreamPublisher(nats_url, name="test", retention_h=1, max_mb=64)
    writer = LogWriter(logs_dir, SystemClock())
    try:
        sent = await LogShipper(logs_dir, writer, publisher, "node-t", SystemClock()).ship()
    finally:
        await publisher.close()
    assert 3 <= sent <= 6, sent  # whole batches, not a message per line
    got = await stored_messages(nats_url, "shipfn")
    assert [r["message"] for r in got] == messages
    assert all(
        r["namespace"] == "ns" and r["version"] == "1" and r["stream"] == "stdout" for r in got
    )
    # Every byte shipped and no instance holds them: the files are gone.
    assert sorted(p.name for p in logs_dir.iterdir()) == [CURSORS_FILE]


SHIPPER = """
import asyncio, sys
from pathlib import Path
from nimbus.common.clock import SystemClock
from nimbus.nodeagent.logcapture import LogWriter
from nimbus.nodeagent.logship import LogShipper
from nimbus.nodeagent.stores.logstream import LogStreamPublisher

async def main() -> None:
    logs_dir, url = Path(sys.argv[1]), sys.argv[2]
    publisher = LogStreamPublisher(url, name="shipper", retention_h=1, max_mb=256)
    writer = LogWriter(logs_dir, SystemClock())
    await LogShipper(logs_dir, writer, publisher, "node-k", SystemClock()).run()

asyncio.run(main())
"""


def cursor(logs_dir: Path) -> int:
    try:
        return int(json.loads((logs_dir / CURSORS_FILE).read_text()).get("inst-k", 0))
    except (OSError, ValueError):
        return 0


@pytest.mark.slow
async def test_a_killed_shipper_is_resumed_from_its_cursor_with_nothing_lost(
    tmp_path: Path, nats_url: str
) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    messages = [f"k{i:06d} " + "y" * 500 for i in range(40000)]  # ~22 MB: dozens of batches
    await write_lines(logs_dir, "inst-k", messages)
    size = (logs_dir / "inst-k.jsonl").stat().st_size

    first = subprocess.Popen(
        [sys.executable, "-c", SHIPPER, str(logs_dir), nats_url], env=PLAINTEXT_ENV
    )
    try:
        # Polled often: on an idle machine the whole backlog ships in well under a second.
        await until(lambda: 0 < cursor(logs_dir) < size, 60, "the first batches", 0.005)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = cursor(logs_dir)
    assert 0 < killed_at < size

    second = subprocess.Popen(
        [sys.executable, "-c", SHIPPER, str(logs_dir), nats_url], env=PLAINTEXT_ENV
    )
    try:
        await until(
            lambda: not (logs_dir / "inst-k.jsonl").exists(),
            120,
            "the rest shipped",
        )
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait()
    got = [str(r["message"]) for r in await stored_messages(nats_url, "shipfn")]
    assert set(got) == set(messages)  # nothing lost
    assert len(got) - len(messages) <= 2000  # duplicates: at most the batch in flight at the kill
    assert got == sorted(got)  # in order, a duplicate batch repeating only what came just before it


@pytest.mark.slow
async def test_nats_down_is_retried_and_the_files_wait(
    tmp_path: Path, own_nats: NatsServer
) -> None:
    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    publisher = LogStreamPublisher(own_nats.url, name="test", retention_h=1, max_mb=64)
    shipper = LogShipper(
        logs_dir, LogWriter(logs_dir, SystemClock()), publisher, "node-d", SystemClock()
    )
    try:
        await write_lines(logs_dir, "inst-d", ["before"])
        assert await shipper.ship() == 1
        own_nats.kill9()
        await write_lines(logs_dir, "inst-d", ["while down"])
        with pytest.raises(Unavailable):
            await shipper.ship()
        assert (logs_dir / "inst-d.jsonl").exists()
        own_nats.start()  # same port and store

        async def shipped() -> bool:
            try:
                return await shipper.ship() >= 0 and not (logs_dir / "inst-d.jsonl").exists()
            except Unavailable:
                return False

        await until(shipped, 60, "shipping after NATS came back")
    finally:
        await publisher.close()
    got = [r["message"] for r in await stored_messages(own_nats.url, "shipfn")]
    assert got == ["before", "while down"]


async def test_a_noisy_namespace_loses_its_own_oldest_lines_never_anothers(
    tmp_path: Path, own_nats: NatsServer
) -> None:
    """Issue 15.4: each namespace has its own budget (a stream each). The loud namespace prints
    several times its 1 MB budget after the quiet one's lines; the quiet one keeps every line,
    and every REPORT reaches NIMBUS_USAGE, which no log budget touches."""
    import nats
    from nimbus.common import logstream
    from nimbus.nodeagent.spec import Report

    logs_dir = tmp_path / "logs"
    logs_dir.mkdir()
    quiet, loud = LogSource("quiet", "fn", "1"), LogSource("loud", "fn", "1")
    publisher = LogStreamPublisher(own_nats.url, name="test", retention_h=1, max_mb=1)
    writer = LogWriter(logs_dir, SystemClock())
    shipper = LogShipper(logs_dir, writer, publisher, "node-b", SystemClock())
    try:
        await write_lines(logs_dir, "inst-q", [f"quiet {i}" for i in range(100)], quiet)
        report = Report(
            duration_ms=1.0,
            billed_ms=1,
            memory_mb=128,
            max_memory_used_mb=10,
            cold_start=False,
            init_duration_ms=0.0,
            error="",
        )
        writer.append("inst-q", quiet, "req-q", "platform", ["REPORT RequestId: req-q"], report)
        await writer.flush()
        await shipper.ship()
        for round_ in range(8):  # 8 × ~0.5 MB
            await write_lines(
                logs_dir,
                f"inst-l{round_}",
                [f"loud {round_} {i} " + "x" * 500 for i in range(1000)],
                loud,
            )
            await shipper.ship()
    finally:
        await publisher.close()
    store = JetStreamLogStore(own_nats.url, name="test-reader", retention_h=1, max_mb=1)
    try:
        got = [
            json.loads(line)["message"]
            async for b in store.read("logs.quiet.fn", 0.0)
            for line in b.data.splitlines()
        ]
        loud_got = [
            json.loads(line)["message"]
            async for b in store.read("logs.loud.fn", 0.0)
            for line in b.data.splitlines()
        ]
    finally:
        await store.close()
    assert got[:100] == [f"quiet {i}" for i in range(100)]
    # The loud namespace kept at most its budget: its own oldest lines went.
    assert 0 < len(loud_got) < 8000 and loud_got[-1].startswith("loud 7 999 ")
    nc = await nats.connect(own_nats.url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(logstream.stream_name("loud"))
        assert info.state.bytes <= 1024 * 1024
        usage = await js.stream_info(logstream.USAGE_STREAM, subjects_filter="nimbus.usage.>")
        assert (usage.state.subjects or {}).get("nimbus.usage.quiet.fn") == 1
    finally:
        await nc.close()
