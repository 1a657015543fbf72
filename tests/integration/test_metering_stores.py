"""Metering against a real nats-server (JetStream, file storage) and redis-server: REPORT records
published to NIMBUS_USAGE become exact usage and per-minute metrics, once each, through duplicates,
redeliveries, two consumers at once and consumers cancelled mid-batch; throttles recorded by the
invoker land in the same minute buckets."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import nats.js.errors
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from nimbus.api.meter import Meter, Report, parse_reports
from nimbus.api.metrics import MetricsApi
from nimbus.api.stores.logfeed import CONSUMER, LogFeed
from nimbus.api.stores.meterstore import RedisMeter
from nimbus.api.usage import UsageApi
from nimbus.common import fnmetrics as fm
from nimbus.common import logstream
from nimbus.common.auth import Principal
from nimbus.common.clock import SystemClock
from nimbus.common.histogram import bucket_of
from nimbus.common.model import FunctionConfig, FunctionRecord
from nimbus.invoker.stores.throttles import ThrottleRecorder

from tests.support import free_port, until
from tests.support.servers import NatsServer, RedisServer

pytestmark = [pytest.mark.timeout(180), pytest.mark.asyncio(loop_scope="module")]

ACK_WAIT_S = 2.0
SEEN_TTL_S = 3 * 86400


@pytest.fixture(scope="module")
def nats_url(shared_nats: NatsServer) -> str:
    """The module's own NATS account (its own streams) on the session's server."""
    return shared_nats.account()


@pytest.fixture(scope="module")
def redis_url(shared_redis: RedisServer) -> str:
    """The module's own database on the session's redis-server."""
    return shared_redis.database()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def store(redis_url: str) -> AsyncIterator[RedisMeter]:
    meter_store = RedisMeter(redis_url, SEEN_TTL_S, SystemClock())
    yield meter_store
    await meter_store.close()


class Publisher:
    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Publisher:
        self.nc = await nats.connect(self.url)
        self.js = self.nc.jetstream(timeout=5)
        await logstream.ensure_stream(self.js, 72, 1024)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.nc.close()

    async def publish(self, records: Sequence[dict[str, Any]]) -> None:
        first = records[0]
        body = b"\n".join(json.dumps(r).encode() for r in records)
        await self.js.publish(logstream.usage_subject(first["namespace"], first["function"]), body)

    async def drained(self) -> bool:
        """Every message delivered to the meter consumer and acked."""
        try:
            info = await self.js.consumer_info(logstream.USAGE_STREAM, CONSUMER)
        except nats.js.errors.NotFoundError:
            return False  # no replica has made the consumer yet
        return (
            info.num_pending == 0
            and info.num_ack_pending == 0
            and info.delivered.stream_seq
            == (await self.js.stream_info(logstream.USAGE_STREAM)).state.last_seq
        )


def report(
    ns: str,
    rid: str,
    *,
    ts: str,
    fn: str = "hello",
    version: str = "$LATEST",
    billed_ms: int = 100,
    memory_mb: int = 128,
    duration_ms: float = 99.5,
    error: str = "",
    cold: bool = False,
    init_ms: float = 0.0,
    mem_used: int = 30,
) -> dict[str, Any]:
    return {
        "ts": ts,
        "namespace": ns,
        "function": fn,
        "version": version,
        "request_id": rid,
        "stream": "platform",
        "message": f"REPORT RequestId: {rid}",
        "instance_id": "i-1",
        "report": {
            "duration_ms": duration_ms,
            "billed_ms": billed_ms,
            "memory_mb": memory_mb,
            "max_memory_used_mb": mem_used,
            "cold_start": cold,
            "init_duration_ms": init_ms,
            "error": error,
        },
    }


def line(ns: str, rid: str, ts: str, text: str, fn: str = "hello") -> dict[str, Any]:
    return {
        "ts": ts,
        "namespace": ns,
        "function": fn,
        "version": "$LATEST",
        "request_id": rid,
        "stream": "stdout",
        "message": text,
        "instance_id": "i-1",
    }


def ago(seconds: float) -> tuple[str, str]:
    """A REPORT time this long before now, and its UTC day: the stores keep minutes 25 h, so the
    tests stamp their reports relative to the clock rather than on a date that ages out."""
    ts = datetime.now(UTC) - timedelta(seconds=seconds)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"), ts.date().isoformat()


def namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


class Replica:
    """One api replica's metering: its own NATS connection, the shared durable consumer."""

    def __init__(self, url: str, store: Any, name: str) -> None:
        self.feed = LogFeed(
            url, name=name, retention_h=72, max_mb=1024, ack_wait_s=ACK_WAIT_S, max_ack_pending=1000
        )
        self.meter = Meter(self.feed, store, SystemClock(), batch=50)
        self.tasks = [asyncio.create_task(self.feed.run()), asyncio.create_task(self.meter.run())]

    async def stop(self) -> None:
        """As a kill -9: nothing acked that was not acked already."""
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.feed.close()


async def usage_of(
    store: RedisMeter, ns: str, first: str, last: str
) -> dict[tuple[str, str, str], tuple[int, int]]:
    days = [d.isoformat() for d in (date.fromisoformat(first), date.fromisoformat(last))]
    rows = await store.usage(ns, sorted(set(days)))
    return {(r.function, r.version, r.day): (r.requests, r.mb_ms) for r in rows if r.requests}


async def test_reports_become_exact_usage_and_minute_metrics(
    nats_url: str, store: RedisMeter
) -> None:
    ns = namespace()
    # Yesterday's last second and today's first (both within the 25 h the minutes are kept).
    today = datetime.now(UTC).date()
    day1, day2 = (today - timedelta(days=1)).isoformat(), today.isoformat()
    records = [
        # Two calls a second before midnight, one after it: two days.
        report(
            ns,
            "a1",
            ts=f"{day1}T23:59:59.100Z",
            billed_ms=3,
            memory_mb=128,
            duration_ms=2.5,
            cold=True,
            init_ms=150.25,
            mem_used=41,
        ),
        report(
            ns,
            "a2",
            ts=f"{day1}T23:59:59.900Z",
            billed_ms=1000,
            memory_mb=10240,
            duration_ms=999.1,
            error="Timeout",
            mem_used=70,
        ),
        report(ns, "a3", ts=f"{day2}T00:00:00.000Z", billed_ms=7, memory_mb=256, duration_ms=6.1),
        report(
            ns,
            "b1",
            ts=f"{day2}T00:00:01.000Z",
            version="3",
            billed_ms=1,
            memory_mb=128,
            duration_ms=0.4,
        ),
    ]
    async with Publisher(nats_url) as pub:
        await pub.publish(
            [line(ns, "a1", records[0]["ts"], "hello from a1"), records[0], records[1]]
        )
        await pub.publish(
            [records[2], line(ns, "a3", records[2]["ts"], 'a "report" word'), records[3]]
        )
        replica = Replica(nats_url, store, "api-1")
        try:
            await until(pub.drained, 60, "the meter to ack every message")
        finally:
            await replica.stop()
    usage = await usage_of(store, ns, day1, day2)
    assert usage == {
        ("hello", "$LATEST", day1): (2, 3 * 128 + 1000 * 10240),
        ("hello", "$LATEST", day2): (1, 7 * 256),
        ("hello", "3", day2): (1, 1 * 128),
    }
    # The core on top of the real store: totals and GB-s computed from the exact MB-ms.
    result = await UsageApi(store, SystemClock()).get(Principal(ns, "k", False), day1, day2)
    assert (result.total_requests, result.total_mb_ms) == (
        4,
        3 * 128 + 1000 * 10240 + 7 * 256 + 128,
    )
    assert [r.gb_seconds for r in result.rows] == [
        (3 * 128 + 1000 * 10240) / 1024 / 1000,
        7 * 256 / 1024 / 1000,
        128 / 1024 / 1000,
    ]
    # Another namespace sees none of it.
    other = await UsageApi(store, SystemClock()).get(Principal(namespace(), "k", True), day1, day2)
    assert other.rows == []

    minute1 = fm.minute_start(datetime.fromisoformat(records[0]["ts"]).timestamp())
    (m1, m2) = await store.minutes(ns, "hello", [minute1, minute1 + 60])
    assert m1[fm.INVOCATIONS] == 2 and m1[fm.ERRORS] == 1 and m1[fm.COLD_STARTS] == 1
    assert m1[fm.INITS] == 1 and m1[fm.INIT_US] == 150250 and m1[fm.MAX_MEMORY_MB] == 70
    assert m1[fm.DURATION_US] == 2500 + 999100
    assert m1[fm.bucket_field(bucket_of(2.5))] == 1 and m1[fm.bucket_field(bucket_of(999.1))] == 1
    assert m2[fm.INVOCATIONS] == 2 and fm.ERRORS not in {k for k, v in m2.items() if v}


async def test_one_batch_sums_large_bills_exactly_and_skips_the_seen(store: RedisMeter) -> None:
    """The script adds a whole batch per hash in Lua: sums past 2**32 stay exact integers, and a
    batch that mixes counted and new request ids adds only the new ones."""
    ns = namespace()
    ts, day = ago(3600)
    big = [
        report(
            ns,
            f"r{i}",
            ts=ts,
            billed_ms=900_000,
            memory_mb=10240,
            duration_ms=899_999.5,
            mem_used=i,
        )
        for i in range(600)
    ]
    first, _ = parse_reports(b"\n".join(json.dumps(r).encode() for r in big[:250]))
    assert await store.apply(first) == 250
    every, _ = parse_reports(b"\n".join(json.dumps(r).encode() for r in big))
    assert await store.apply(every) == 350
    assert await store.apply(every) == 0
    usage = await usage_of(store, ns, day, day)
    assert usage == {("hello", "$LATEST", day): (600, 600 * 900_000 * 10240)}
    (m,) = await store.minutes(
        ns, "hello", [fm.minute_start(datetime.fromisoformat(ts).timestamp())]
    )
    assert (
        m[fm.INVOCATIONS] == 600
        and m[fm.DURATION_US] == 600 * 899_999_500
        and m[fm.MAX_MEMORY_MB] == 599
    )


async def test_a_report_older_than_the_minute_retention_is_billed_but_not_in_the_minutes(
    store: RedisMeter,
) -> None:
    """A node that ships a backlog after a day's outage: its calls are still billed on their day,
    while their minutes, which would have expired already, stay empty; the fresh call of the same
    batch lands in its minute as usual."""
    ns = namespace()
    old_ts, old_day = ago(fm.MINUTE_TTL_S + 600)
    new_ts, new_day = ago(60)
    old = report(ns, "old", ts=old_ts, billed_ms=5, memory_mb=128)
    new = report(ns, "new", ts=new_ts, billed_ms=7, memory_mb=256)
    reports, _ = parse_reports(b"\n".join(json.dumps(r).encode() for r in (old, new)))
    assert await store.apply(reports) == 2
    usage = await usage_of(store, ns, old_day, new_day)
    if old_day == new_day:
        assert usage == {("hello", "$LATEST", new_day): (2, 5 * 128 + 7 * 256)}
    else:
        assert usage == {
            ("hello", "$LATEST", old_day): (1, 5 * 128),
            ("hello", "$LATEST", new_day): (1, 7 * 256),
        }
    old_minute = fm.minute_start(datetime.fromisoformat(old_ts).timestamp())
    new_minute = fm.minute_start(datetime.fromisoformat(new_ts).timestamp())
    (m_old, m_new) = await store.minutes(ns, "hello", [old_minute, new_minute])
    assert m_old == {} and m_new[fm.INVOCATIONS] == 1
    assert await store.apply(reports) == 0  # and it is still counted once


async def test_duplicates_and_redeliveries_count_once(nats_url: str, store: RedisMeter) -> None:
    ns = namespace()
    ts, day = ago(7200)
    calls = [report(ns, f"r{i}", ts=ts, billed_ms=10 + i, memory_mb=128) for i in range(5)]
    async with Publisher(nats_url) as pub:
        # The same REPORT twice in a message, and a whole message sent again (a node-agent that
        # re-sent a batch after the stream's duplicate window).
        await pub.publish([*calls, calls[0]])
        await pub.publish(calls[2:])
        replica = Replica(nats_url, store, "api-1")
        try:
            await until(pub.drained, 60, "the meter to ack every message")
        finally:
            await replica.stop()
    expected = (5, sum((10 + i) * 128 for i in range(5)))
    assert await usage_of(store, ns, day, day) == {("hello", "$LATEST", day): expected}
    # Applying the same reports straight to the store again changes nothing either.
    parsed = [
        Report(
            ns,
            "hello",
            "$LATEST",
            c["request_id"],
            datetime.fromisoformat(ts),
            c["report"]["billed_ms"],
            128,
            1.0,
            0,
            False,
            0.0,
            "",
        )
        for c in calls
    ]
    assert await store.apply(parsed) == 0
    assert await usage_of(store, ns, day, day) == {("hello", "$LATEST", day): expected}


class StallingStore:
    """The real store, but the replica 'dies' around one apply: before it (nothing written) or
    after it (written, never acked)."""

    def __init__(self, real: RedisMeter, when: str) -> None:
        self.real = real
        self.when = when
        self.stalled = asyncio.Event()
        self.applied = 0

    async def apply(self, reports: Sequence[Report]) -> int:
        if self.when == "before":
            self.stalled.set()
            await asyncio.Event().wait()
        self.applied = await self.real.apply(reports)
        self.stalled.set()
        await asyncio.Event().wait()
        return self.applied


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_replica_killed_mid_batch_loses_and_doubles_nothing(
    nats_url: str, store: RedisMeter, when: str
) -> None:
    ns = namespace()
    ts, day = ago(7200)
    calls = [report(ns, f"k{i}", ts=ts, billed_ms=i + 1, memory_mb=512) for i in range(40)]
    async with Publisher(nats_url) as pub:
        for i in range(0, 40, 4):
            await pub.publish(calls[i : i + 4])
        stalling = StallingStore(store, when)
        doomed = Replica(nats_url, stalling, "api-1")
        await asyncio.wait_for(stalling.stalled.wait(), 30)
        await doomed.stop()
        survivor = Replica(nats_url, store, "api-2")
        try:
            await until(pub.drained, 60, "the survivor to ack every message")
        finally:
            await survivor.stop()
    expected = (40, sum((i + 1) * 512 for i in range(40)))
    assert await usage_of(store, ns, day, day) == {("hello", "$LATEST", day): expected}
    # After: the dead replica's batch was in Redis, and its redelivery to the survivor added none.
    assert (stalling.applied > 0) == (when == "after")
    assert stalling.applied + survivor.meter.applied == 40


async def test_two_replicas_share_the_stream_exactly(nats_url: str, store: RedisMeter) -> None:
    ns = namespace()
    ts, day = ago(7200)
    # 200 messages of 3 calls of one function each.
    calls = [
        report(
            ns,
            f"p{i}",
            ts=ts,
            fn=f"f{i // 3 % 3}",
            billed_ms=i % 17 + 1,
            memory_mb=128 * (i % 4 + 1),
        )
        for i in range(600)
    ]
    async with Publisher(nats_url) as pub:
        replicas = [
            Replica(nats_url, store, "api-1"),
            Replica(nats_url, store, "api-2"),
        ]
        try:
            for i in range(0, 600, 3):
                await pub.publish(calls[i : i + 3])
            await until(pub.drained, 60, "both replicas to ack every message")
        finally:
            for r in replicas:
                await r.stop()
    assert sum(r.meter.applied for r in replicas) == 600
    assert all(r.meter.applied > 0 for r in replicas), "both replicas should have taken batches"
    rows = await usage_of(store, ns, day, day)
    expected = {}
    for f in ("f0", "f1", "f2"):
        mine = [c for c in calls if c["function"] == f]
        expected[(f, "$LATEST", day)] = (
            len(mine),
            sum(c["report"]["billed_ms"] * c["report"]["memory_mb"] for c in mine),
        )
    assert rows == expected


class Functions:
    async def get(self, who: Principal, name: str) -> FunctionRecord:
        return FunctionRecord(
            who.namespace, name, FunctionConfig("python3.11", "main.handler"), "sha", 1, "c", "u", 1
        )


@pytest.mark.slow
async def test_throttles_land_in_the_minute_and_survive_a_redis_outage(
    redis_url: str, store: RedisMeter, tmp_path: Path
) -> None:
    ns = namespace()
    clock = SystemClock()
    recorder = ThrottleRecorder(redis_url, clock)
    for _ in range(3):
        recorder.record(ns, "busy")
    await recorder.flush()
    now = clock.now()
    minutes = await MetricsApi(Functions(), store, clock).get(Principal(ns, "k", False), "busy", 2)
    # The flush may straddle a minute boundary; the 3 are in one of the last two minutes.
    assert sum(m.throttles for m in minutes) == 3
    key = fm.minute_key(ns, "busy", fm.minute_start(now))
    raw = aioredis.from_url(redis_url)
    try:
        ttl = await raw.ttl(key)
        assert fm.MINUTE_TTL_S - 120 < ttl <= fm.MINUTE_TTL_S
    finally:
        await raw.aclose()
    await recorder.close()

    # Redis away: counts are kept in memory and arrive once it is back.
    port = free_port()
    late = ThrottleRecorder(f"redis://127.0.0.1:{port}/0", clock)
    late.record(ns, "later")
    late.record(ns, "later")
    await late.flush()
    server = RedisServer(tmp_path, port=port).start()
    try:
        await late.flush()
        other = RedisMeter(f"redis://127.0.0.1:{port}/0", SEEN_TTL_S, SystemClock())
        try:
            (m,) = await other.minutes(ns, "later", [fm.minute_start(clock.now())])
            if not m:  # the minute turned between record and read
                (m,) = await other.minutes(ns, "later", [fm.minute_start(clock.now()) - 60])
            assert m[fm.THROTTLES] == 2
        finally:
            await other.close()
        await late.close()
    finally:
        server.terminate()


async def test_the_old_shared_log_stream_is_retired_and_its_reports_metered_once(
    shared_nats: NatsServer, store: RedisMeter
) -> None:
    """An upgrade from the one shared NIMBUS_LOGS (issue 15.4): it takes no new lines (so the
    namespaces' streams can be made), and the REPORTs it holds that the meter had not counted
    are counted, once, even when the usage stream has them too; then its consumer goes."""
    from nats.js import api

    url = shared_nats.account()
    ns = namespace()
    ts, day = ago(600)
    old = report(ns, "old", ts=ts, billed_ms=5, memory_mb=128)
    both = report(ns, "both", ts=ts, billed_ms=7, memory_mb=128)
    new = report(ns, "new", ts=ts, billed_ms=11, memory_mb=128)
    nc = await nats.connect(url)
    js = nc.jetstream(timeout=5)
    try:
        await js.add_stream(
            api.StreamConfig(name=logstream.LEGACY_STREAM, subjects=["logs.>"], max_age=3600)
        )
        await js.add_consumer(
            logstream.LEGACY_STREAM,
            api.ConsumerConfig(
                durable_name=CONSUMER,
                ack_policy=api.AckPolicy.EXPLICIT,
                filter_subject="logs.>",
            ),
        )
        body = b"\n".join(json.dumps(r).encode() for r in (old, both))
        await js.publish(logstream.subject(ns, "hello"), body)
        replica = Replica(url, store, "api-up")
        try:

            async def retired() -> bool:
                info = await js.stream_info(logstream.LEGACY_STREAM)
                return info.config.subjects == [logstream.LEGACY_SUBJECT]

            await until(retired, 30, "the old stream to be retired")
            usage_body = b"\n".join(json.dumps(r).encode() for r in (both, new))
            await js.publish(logstream.usage_subject(ns, "hello"), usage_body)

            async def legacy_consumer_gone() -> bool:
                try:
                    await js.consumer_info(logstream.LEGACY_STREAM, CONSUMER)
                except nats.js.errors.NotFoundError:
                    return True
                return False

            await until(legacy_consumer_gone, 60, "the old stream's REPORTs to be metered")

            async def counted() -> bool:
                return await usage_of(store, ns, day, day) == {
                    ("hello", "$LATEST", day): (3, (5 + 7 + 11) * 128)
                }

            await until(counted, 60, "every REPORT counted once")
            # The old lines are still readable; the namespace's stream can now be made.
            await logstream.ensure_namespace_stream(js, ns, 1, 64)
            assert (await js.stream_info(logstream.LEGACY_STREAM)).state.messages == 1
        finally:
            await replica.stop()
    finally:
        await nc.close()
