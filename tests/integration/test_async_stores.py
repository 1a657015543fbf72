"""The async path's adapters and consumer against a real nats-server (JetStream, file storage) and
redis-server, with a fake function runner in place of the instances."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from nimbus.common.auth import Principal
from nimbus.common.clock import SystemClock
from nimbus.common.errors import Throttled, Unavailable
from nimbus.common.model import FunctionConfig, FunctionRecord
from nimbus.invoker.events.config import EventsConfig
from nimbus.invoker.events.consumer import EventConsumer
from nimbus.invoker.events.invocations import AsyncInvocations
from nimbus.invoker.events.records import EventRef, InvocationStatus, Move
from nimbus.invoker.stores import jetstream
from nimbus.invoker.stores.jetstream import JetStreamClient
from nimbus.invoker.stores.redis_records import RedisRecords, record_key
from nimbus.invoker.sync.invoke import InvokeResult

from tests.support import free_port
from tests.support.servers import NatsServer, RedisServer

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

WHO = Principal("ns", "k", False)


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def js(shared_nats: NatsServer) -> AsyncIterator[JetStreamClient]:
    """A client of the module's own NATS account on the session's server."""
    async with running_js(shared_nats.account()) as client:
        yield client


@contextlib.asynccontextmanager
async def running_js(url: str) -> AsyncIterator[JetStreamClient]:
    client = JetStreamClient(url, name="test", ack_wait_s=3, dlq_max_age_s=3600)
    task = asyncio.create_task(client.run())
    try:
        await client.wait_ready(20)
        yield client
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def records(shared_redis: RedisServer) -> AsyncIterator[RedisRecords]:
    """The module's own database on the session's redis-server."""
    store = RedisRecords(shared_redis.database(), 600)
    yield store
    await store.close()


class Functions:
    """The function lookup the core needs, with one function per name asked for."""

    def __init__(self, max_concurrency: int = 0) -> None:
        self.max_concurrency = max_concurrency

    async def get(self, namespace: str, name: str) -> FunctionRecord | None:
        if name == "missing":
            return None
        config = FunctionConfig("python3.11", "main.handler", max_concurrency=self.max_concurrency)
        return FunctionRecord(namespace, name, config, "sha", 1, "c", "u", 1)

    async def prefetch(self, namespace: str, name: str, qualifier: str) -> None:
        return None

    def version_of(self, namespace: str, name: str):  # type: ignore[no-untyped-def]
        return lambda number: None

    def alias_of(self, namespace: str, name: str):  # type: ignore[no-untyped-def]
        return lambda alias: None


class Runner:
    """Fails `fail` times per event with a function error, throttles `throttle` times first."""

    def __init__(self, fail: int = 0, throttle: int = 0, sleep_s: float = 0.0) -> None:
        self.fail = fail
        self.throttle = throttle
        self.sleep_s = sleep_s
        self.runs: dict[str, int] = {}
        self.throttled: dict[str, int] = {}

    async def invoke(
        self, who: Principal, name: str, qualifier: str, payload: bytes, deadline_s: float
    ) -> InvokeResult:
        key = json.loads(payload)["id"]
        if self.throttled.get(key, 0) < self.throttle:
            self.throttled[key] = self.throttled.get(key, 0) + 1
            raise Throttled("busy")
        self.runs[key] = self.runs.get(key, 0) + 1
        if self.sleep_s:
            await asyncio.sleep(self.sleep_s)
        if self.runs[key] <= self.fail:
            return InvokeResult(
                "rq",
                b'{"errorType": "Boom", "errorMessage": "no"}',
                "Unhandled",
                1,
                1,
                False,
                "$LATEST",
            )
        return InvokeResult("rq", json.dumps({"echo": key}).encode(), "", 1, 1, False, "$LATEST")


async def test_records_follow_the_sequence_rule(records: RedisRecords):
    rid = str(uuid.uuid4())
    ref = EventRef(rid, "ns", "fn", "", 100.0, 5)
    assert await records.create(ref, 100.0)
    assert not await records.create(ref, 101.0)  # a second accept of the same event
    moved = await records.move(ref, Move(InvocationStatus.RUNNING, attempts_delta=1), 102.0)
    assert (moved.applied, moved.status, moved.attempts) == (True, "RUNNING", 1)
    assert not await records.create(ref, 103.0)  # a late accept never resets progress
    done = await records.move(
        ref, Move(InvocationStatus.SUCCEEDED, result=b'{"r": 1}', error=b""), 104.0
    )
    assert done.applied
    late = await records.move(ref, Move(InvocationStatus.RUNNING, attempts_delta=1), 105.0)
    assert (late.applied, late.status) == (False, "SUCCEEDED")
    stale = await records.move(
        EventRef(rid, "ns", "fn", "", 100.0, 4), Move(InvocationStatus.FAILED), 106.0
    )
    assert not stale.applied
    # A replay is a newer event: it starts the record afresh.
    assert await records.create(EventRef(rid, "ns", "fn", "", 200.0, 9), 200.0)
    record = await records.get(rid)
    assert record is not None and (record.status, record.attempts, record.result_json) == (
        "QUEUED",
        0,
        "",
    )


async def test_writes_made_together_share_a_batch_and_keep_their_own_outcomes(
    records: RedisRecords,
):
    refs = [EventRef(str(uuid.uuid4()), "ns", "fn", "", 100.0, 7) for _ in range(40)]
    assert all(await asyncio.gather(*(records.create(ref, 100.0) for ref in refs)))
    first = refs[0]
    # Queued in the same instant: one batch, applied in the order they were made.
    results = await asyncio.gather(
        records.move(first, Move(InvocationStatus.RUNNING, attempts_delta=1), 101.0),
        records.move(first, Move(InvocationStatus.SUCCEEDED, result=b'{"r": 1}', error=b""), 102.0),
        records.move(first, Move(InvocationStatus.RUNNING, attempts_delta=1), 103.0),
        # Bytes go as they are (not valid UTF-8 here); strings that look like numbers stay strings.
        *(
            records.move(
                ref,
                Move(InvocationStatus.FAILED, error=b"\xff\x00e", version="7", request_id="12"),
                104.0,
            )
            for ref in refs[1:]
        ),
        records.create(first, 105.0),
    )
    running, done, late, *failed, again = results
    assert (running.applied, running.status, running.attempts) == (True, "RUNNING", 1)
    assert (done.applied, done.status) == (True, "SUCCEEDED")
    assert (late.applied, late.status, late.attempts) == (False, "SUCCEEDED", 1)
    assert all(m.applied and m.status == "FAILED" for m in failed) and again is False
    record = await records.get(first.invocation_id)
    assert record is not None and (record.status, record.attempts, record.result_json) == (
        "SUCCEEDED",
        1,
        '{"r": 1}',
    )
    assert (record.namespace, record.function, record.created_at) == (
        "ns",
        "fn",
        "1970-01-01T00:01:40.000Z",
    )
    raw = await records._redis.hgetall(record_key(refs[1].invocation_id))
    assert (raw[b"error"], raw[b"version"], raw[b"request_id"], raw[b"seq"]) == (
        b"\xff\x00e",
        b"7",
        b"12",
        b"7",
    )


async def test_a_lost_redis_fails_each_write_within_the_deadline():
    store = RedisRecords(f"redis://127.0.0.1:{free_port()}/0", 600)
    try:
        ref = EventRef(str(uuid.uuid4()), "ns", "fn", "", 100.0, 1)
        outcomes = await asyncio.gather(
            store.create(ref, 100.0),
            store.move(ref, Move(InvocationStatus.RUNNING), 101.0),
            return_exceptions=True,
        )
        assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    finally:
        await store.close()


async def test_publish_dedups_by_message_id(js: JetStreamClient):
    subject = "nimbus.events.ns.dedup"
    first = await js.publish(subject, b"{}", {}, "same-id")
    again = await js.publish(subject, b"{}", {}, "same-id")
    assert not first.duplicate and again.duplicate and again.seq == first.seq


async def test_standing_pull_hands_over_at_most_the_room_and_outlives_its_requests(
    js: JetStreamClient,
):
    subject = "nimbus.events.ns.pull-" + uuid.uuid4().hex[:8]
    for i in range(10):
        await js.publish(subject, b"{}", {"test": subject}, f"pull-{subject}-{i}")
    sub = await js.subscribe_events("ns")
    try:
        seen: list[int] = []
        deadline = time.monotonic() + 20
        while len(seen) < 10 and time.monotonic() < deadline:
            got = await sub.pull(3, 1.0, batch_min=2)
            assert len(got) <= 3
            for d in got:
                if d.headers.get("test") == subject:  # the stream may hold other tests' events
                    assert d.deliveries == 1
                    seen.append(d.seq)
                await d.ack()
        assert len(seen) == 10 == len(set(seen))
        # Idle past the requests' expiry: the pull asks again and the next event still comes.
        assert await sub.pull(2, 0.2) == []
        await asyncio.sleep(jetstream.PULL_EXPIRES_S + 0.5)
        await js.publish(subject, b"{}", {"test": subject}, f"pull-{subject}-late")
        late = await sub.pull(2, 5.0)
        assert [d.headers.get("test") for d in late] == [subject]
        await late[0].ack()
    finally:
        await sub.close()


async def run_consumer(js, records, runner, cfg, functions=None):  # type: ignore[no-untyped-def]
    functions = functions or Functions()
    submitter = AsyncInvocations(functions, js, records, SystemClock(), cfg.max_event_bytes)
    consumer = EventConsumer(
        js,
        records,
        runner,
        functions,
        submitter,
        lambda ns, fn: None,
        cfg,
        SystemClock(),
        lambda: 0.5,
    )
    return submitter, consumer, asyncio.create_task(consumer.run())


async def wait_status(records: RedisRecords, ids: list[str], want: str, timeout_s: float = 30):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while True:
        got = [await records.get(i) for i in ids]
        if all(r is not None and r.status == want for r in got):
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"not all {want}: {[r.status if r else None for r in got]}")
        await asyncio.sleep(0.05)


async def test_events_run_retry_dead_letter_and_replay(js: JetStreamClient, records: RedisRecords):
    cfg = EventsConfig(ack_wait_s=3, retry_base_s=0.05, retry_max_s=0.2, max_retries=2, workers=4)
    runner = Runner(fail=3, throttle=2)
    submitter, consumer, task = await run_consumer(js, records, runner, cfg)
    try:
        ok_id = await submitter.submit(WHO, "fn-a", "", b'{"id": "ok"}')
        runner.fail = 0
        ok = (await wait_status(records, [ok_id], "SUCCEEDED"))[0]
        # Two throttled deliveries did not count as attempts.
        assert ok.attempts == 1 and json.loads(ok.result_json) == {"echo": "ok"}

        runner.fail = 3
        bad_id = await submitter.submit(WHO, "fn-b", "", b'{"id": "bad"}')
        bad = (await wait_status(records, [bad_id], "FAILED"))[0]
        assert bad.attempts == 3 and runner.runs["bad"] == 3 and "Boom" in bad.error_json
        letters, truncated = await submitter.dead_letters(WHO, "fn-b", 10)
        assert [dl.invocation_id for dl in letters] == [bad_id] and not truncated
        assert letters[0].reason == "retries_exhausted" and letters[0].event == b'{"id": "bad"}'

        runner.fail = 0
        assert await submitter.replay(WHO, "fn-b", [bad_id]) == [bad_id]
        replayed = (await wait_status(records, [bad_id], "SUCCEEDED"))[0]
        assert replayed.attempts == 1
        assert (await submitter.dead_letters(WHO, "fn-b", 10))[0] == []
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_idempotency_key_answers_the_first_id(js: JetStreamClient, records: RedisRecords):
    cfg = EventsConfig(ack_wait_s=3, workers=4)
    submitter = AsyncInvocations(Functions(), js, records, SystemClock(), cfg.max_event_bytes)
    key = uuid.uuid4().hex
    a = await submitter.submit(WHO, "fn-i", "", b'{"id": 1}', key)
    b = await submitter.submit(WHO, "fn-i", "", b'{"id": 2}', key)
    c = await submitter.submit(WHO, "fn-i", "", b'{"id": 1}', key + "x")
    assert a == b != c


async def test_long_runs_are_kept_alive_past_ack_wait(js: JetStreamClient, records: RedisRecords):
    cfg = EventsConfig(ack_wait_s=3, workers=4)
    runner = Runner(sleep_s=5.0)  # longer than ack_wait: in-progress acks must hold it
    submitter, consumer, task = await run_consumer(js, records, runner, cfg)
    try:
        rid = await submitter.submit(WHO, "fn-long", "", b'{"id": "long"}')
        # Marked RUNNING while it runs; the run counts once.
        running = (await wait_status(records, [rid], "RUNNING", timeout_s=10))[0]
        assert running.attempts == 1
        done = (await wait_status(records, [rid], "SUCCEEDED", timeout_s=20))[0]
        assert done.attempts == 1 and runner.runs["long"] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


class SwitchedRecords:
    """The real store behind a switch that makes every call fail as a lost Redis would."""

    def __init__(self, store: RedisRecords) -> None:
        self.store = store
        self.down = True

    async def create(self, ref: EventRef, now: float) -> bool:
        if self.down:
            raise Unavailable("redis down")
        return await self.store.create(ref, now)

    async def move(self, ref: EventRef, move: Move, now: float):  # type: ignore[no-untyped-def]
        if self.down:
            raise Unavailable("redis down")
        return await self.store.move(ref, move, now)

    async def get(self, invocation_id: str):  # type: ignore[no-untyped-def]
        return await self.store.get(invocation_id)


async def test_no_record_no_run_and_short_runs_count_once(
    js: JetStreamClient, records: RedisRecords
):
    cfg = EventsConfig(ack_wait_s=3, workers=4)
    switched = SwitchedRecords(records)
    runner = Runner()
    submitter, consumer, task = await run_consumer(js, switched, runner, cfg)
    try:
        ids = [
            await submitter.submit(WHO, "fn-down", "", json.dumps({"id": f"d{i}"}).encode())
            for i in range(3)
        ]
        await asyncio.sleep(1.5)
        assert runner.runs == {}  # stored, but nothing runs while its outcome could not be kept
        switched.down = False
        done = await wait_status(records, ids, "SUCCEEDED")
        assert [r.attempts for r in done] == [1, 1, 1] and sorted(runner.runs.values()) == [1, 1, 1]
        # With the store back, a first delivery goes QUEUED -> SUCCEEDED at once, counted once.
        rid = await submitter.submit(WHO, "fn-down", "", b'{"id": "quick"}')
        quick = (await wait_status(records, [rid], "SUCCEEDED"))[0]
        assert quick.attempts == 1 and runner.runs["quick"] == 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A private nats-server, as the test kills it."""
    server = NatsServer(tmp_path / "js").start()
    try:
        yield server
    finally:
        server.kill9()


@pytest.mark.slow
async def test_nats_restart_keeps_stored_events(own_nats: NatsServer, records: RedisRecords):
    cfg = EventsConfig(ack_wait_s=3, workers=8)
    async with running_js(own_nats.url) as js:
        submitter = AsyncInvocations(Functions(), js, records, SystemClock(), cfg.max_event_bytes)
        ids = [
            await submitter.submit(WHO, "fn-restart", "", json.dumps({"id": f"r{i}"}).encode())
            for i in range(50)
        ]
        own_nats.kill9()
        own_nats.start()
        await js.wait_ready(20)
        runner = Runner()
        _, consumer, task = await run_consumer(js, records, runner, cfg)
        try:
            await wait_status(records, ids, "SUCCEEDED", timeout_s=30)
            assert sorted(runner.runs) == sorted(f"r{i}" for i in range(50))
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
