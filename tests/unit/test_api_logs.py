"""The log query core: defaults and validation, filtering, the limit and its truncated flag, 404s,
and how a tail ends (function deleted, server draining), with in-memory fakes of its Protocols."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from nimbus.api.logs import (
    MAX_LIMIT,
    LogLine,
    LogsApi,
    StoredBatch,
    make_query,
    matching,
    oldest,
    parse_time,
)
from nimbus.common.auth import Principal
from nimbus.common.errors import InvalidArgument, NotFound, Unavailable
from nimbus.common.model import FunctionConfig, FunctionRecord

pytestmark = pytest.mark.timeout(10)

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
ME = Principal(namespace="team", key_id="k", admin=False)


def test_query_defaults_to_the_last_hour_and_1000_lines() -> None:
    q = make_query(NOW, "", "", "", 0)
    assert (q.since, q.until, q.limit) == ("2027-01-15T07:00:00.000Z", "", 1000)
    q = make_query(NOW, "r", "2027-01-15T09:00:00+02:00", "2027-01-15T07:30:00.5Z", 5)
    assert (q.since, q.until, q.request_id, q.limit) == (
        "2027-01-15T07:00:00.000Z",
        "2027-01-15T07:30:00.500Z",
        "r",
        5,
    )


@pytest.mark.parametrize(
    ("since", "until", "limit", "field"),
    [
        ("", "", MAX_LIMIT + 1, "limit: 10001 must be between 1 and 10000"),
        ("", "", -1, "limit"),
        ("yesterday", "", 0, "since"),
        ("2027-01-15T07:00:00", "", 0, "since: '2027-01-15T07:00:00' needs a time zone"),
        ("2027-01-15T07:00:00Z", "2027-01-15T06:00:00Z", 0, "until"),
    ],
)
def test_bad_queries_name_the_field(since: str, until: str, limit: int, field: str) -> None:
    with pytest.raises(InvalidArgument, match=field):
        make_query(NOW, "", since, until, limit)


def rec(ts: str, message: str, request_id: str = "r1", stream: str = "stdout") -> bytes:
    return (
        json.dumps(
            {
                "ts": ts,
                "namespace": "team",
                "function": "fn",
                "version": "2",
                "request_id": request_id,
                "stream": stream,
                "message": message,
                "instance_id": "i",
            }
        ).encode()
        + b"\n"
    )


def test_matching_filters_by_time_and_request() -> None:
    data = (
        rec("2027-01-15T07:00:00.000Z", "a")
        + b"garbage\n"
        + rec("2027-01-15T07:00:01.000Z", "b", "r2")
        + rec("2027-01-15T07:00:02.000Z", "c")
        + rec("2027-01-15T07:00:03.000Z", "d")
    )
    got = matching(data, "r1", "2027-01-15T07:00:00.000Z", "2027-01-15T07:00:02.000Z")
    assert got == [
        LogLine("2027-01-15T07:00:00.000Z", "r1", "stdout", "a", "2"),
        LogLine("2027-01-15T07:00:02.000Z", "r1", "stdout", "c", "2"),
    ]
    assert [line.message for line in matching(data, "", "2027-01-15T07:00:01.000Z", "")] == [
        "b",
        "c",
        "d",
    ]


def test_oldest_sorts_stably_and_flags_truncation() -> None:
    lines = [LogLine(ts, "", "stdout", m, "1") for ts, m in (("t2", "x"), ("t1", "y"), ("t2", "z"))]
    assert oldest(lines, 3) == ([lines[1], lines[0], lines[2]], False)
    assert oldest(lines, 2) == ([lines[1], lines[0]], True)


class FakeFunctions:
    def __init__(self) -> None:
        self.names = {("team", "fn")}

    async def get(self, who: Principal, name: str) -> FunctionRecord:
        if (who.namespace, name) not in self.names:
            raise NotFound(f"function {name} not found")
        return FunctionRecord(
            who.namespace,
            name,
            FunctionConfig(runtime="python3.11", handler="m.h"),
            "",
            0,
            "",
            "",
            1,
        )


class FakeStore:
    def __init__(self, batches: list[StoredBatch]) -> None:
        self.batches = batches
        self.subjects: list[tuple[str, float | None]] = []

    async def read(self, subject: str, since: float) -> AsyncIterator[StoredBatch]:
        self.subjects.append((subject, since))
        for batch in self.batches:
            yield batch

    async def follow(self, subject: str, since: float | None) -> AsyncIterator[StoredBatch | None]:
        self.subjects.append((subject, since))
        for batch in self.batches:
            yield batch
        while True:
            yield None


class StepClock:
    """monotonic() moves 1 s per reading, so a tail looks around at every idle tick."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return NOW

    def monotonic(self) -> float:
        self.t += 1.0
        return self.t

    async def sleep(self, seconds: float) -> None:
        return None


async def test_get_reads_the_callers_subject_and_limits() -> None:
    store = FakeStore(
        [
            StoredBatch(
                NOW - 10,
                rec("2027-01-15T07:59:50.000Z", "one") + rec("2027-01-15T07:59:50.001Z", "two"),
            ),
            StoredBatch(NOW - 5, rec("2027-01-15T07:59:55.000Z", "three")),
        ]
    )
    api = LogsApi(FakeFunctions(), store, StepClock())
    lines, truncated = await api.get(ME, "fn", "", "", "", 2)
    assert [line.message for line in lines] == ["one", "two"] and truncated
    assert store.subjects == [("logs.team.fn", NOW - 3600)]
    lines, truncated = await api.get(ME, "fn", "r1", "2027-01-15T07:59:52Z", "", 0)
    assert [line.message for line in lines] == ["three"] and not truncated


async def test_unknown_or_foreign_functions_are_404() -> None:
    api = LogsApi(FakeFunctions(), FakeStore([]), StepClock())
    with pytest.raises(NotFound):
        await api.get(ME, "nope", "", "", "", 0)
    with pytest.raises(NotFound):
        await api.get(Principal(namespace="other", key_id="k2", admin=False), "fn", "", "", "", 0)


async def test_tail_ends_when_the_function_is_deleted() -> None:
    functions = FakeFunctions()
    store = FakeStore([StoredBatch(NOW, rec("2027-01-15T08:00:00.000Z", "live"))])
    api = LogsApi(functions, store, StepClock())
    seen = []
    async for line in api.tail(ME, "fn", "", ""):
        seen.append(line.message)
        functions.names.clear()
    assert seen == ["live"]
    assert store.subjects == [("logs.team.fn", None)]


async def test_tail_ends_with_unavailable_when_the_server_drains() -> None:
    api = LogsApi(
        FakeFunctions(),
        FakeStore([StoredBatch(NOW, rec("2027-01-15T08:00:00.000Z", "x"))]),
        StepClock(),
    )
    with pytest.raises(Unavailable, match="shutting down"):
        async for _ in api.tail(ME, "fn", "", "2027-01-15T07:00:00Z"):
            api.close()


def test_parse_time_accepts_offsets() -> None:
    assert parse_time("since", "2027-01-15T09:00:00+01:00") == NOW
