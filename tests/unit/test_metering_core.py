"""Metering's pure parts: REPORT parsing and day bucketing, the per-report store arguments, the
usage range and rows, the metrics window and buckets, the consumer's ack discipline (with fakes)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import date

import pytest
from nimbus.api.config import ApiConfig
from nimbus.api.meter import Meter, Report, parse_reports
from nimbus.api.meterconfig import MIN_SEEN_TTL_S, MeterConfig
from nimbus.api.metrics import MetricsApi, check_minutes, minute_metrics, minute_starts
from nimbus.api.stores.meterstore import USAGE_TTL_S, script_args
from nimbus.api.usage import UsageApi, UsageRow, day_range, days_of, gb_seconds, usage_rows
from nimbus.common import fnmetrics as fm
from nimbus.common.auth import Principal
from nimbus.common.clock import FakeClock
from nimbus.common.config import ConfigError
from nimbus.common.errors import InvalidArgument, NotFound, Unavailable
from nimbus.common.histogram import bucket_of
from nimbus.common.model import FunctionRecord

WHO = Principal("acme", "k1", admin=True)


def record(**over: object) -> dict[str, object]:
    report = {
        "duration_ms": 12.5,
        "billed_ms": 13,
        "memory_mb": 256,
        "max_memory_used_mb": 40,
        "cold_start": False,
        "init_duration_ms": 0.0,
        "error": "",
    }
    rec: dict[str, object] = {
        "ts": "2026-11-27T23:59:59.999Z",
        "namespace": "acme",
        "function": "hello",
        "version": "$LATEST",
        "request_id": "r1",
        "stream": "platform",
        "message": "REPORT RequestId: r1 ...",
        "instance_id": "i1",
        "report": report,
    }
    for key, value in over.items():
        if key.startswith("report_"):
            report[key[len("report_") :]] = value
        else:
            rec[key] = value
    return rec


def body(*records: dict[str, object]) -> bytes:
    return b"\n".join(json.dumps(r).encode() for r in records)


# -- parsing ------------------------------------------------------------------------------------


def test_parse_keeps_reports_and_skips_other_lines() -> None:
    other = {
        "ts": "2026-11-27T10:00:00.000Z",
        "namespace": "acme",
        "function": "hello",
        "version": "$LATEST",
        "request_id": "r0",
        "stream": "stdout",
        "message": 'print("report")',
        "instance_id": "i1",
    }
    reports, bad = parse_reports(
        body(other, record(), record(request_id="r2", report_error="Unhandled"))
    )
    assert bad == 0
    assert [r.request_id for r in reports] == ["r1", "r2"]
    assert reports[0].mb_ms == 13 * 256
    assert reports[1].error == "Unhandled"


@pytest.mark.parametrize(
    "broken",
    [
        record(report_billed_ms=-1),
        record(report_billed_ms=1.5),
        record(report_billed_ms=True),
        record(report_memory_mb=0),
        record(report_cold_start="yes"),
        record(ts="2026-11-27 10:00:00"),
        record(ts="yesterday"),
        record(function="no spaces"),
        record(version="v1|x"),
        record(request_id=""),
        record(report="REPORT"),
    ],
)
def test_bad_reports_are_counted_not_raised(broken: dict[str, object]) -> None:
    reports, bad = parse_reports(body(record(request_id="ok"), broken) + b'\n{"report": ')
    assert [r.request_id for r in reports] == ["ok"]
    assert bad == 2


def test_whole_float_billed_ms_is_accepted() -> None:
    reports, _ = parse_reports(body(record(report_billed_ms=120.0)))
    assert reports[0].billed_ms == 120 and isinstance(reports[0].billed_ms, int)


@pytest.mark.parametrize(
    ("ts", "day"),
    [
        ("2026-11-27T23:59:59.999Z", "2026-11-27"),
        ("2026-11-28T00:00:00.000Z", "2026-11-28"),
        # An offset is converted to UTC before the day is taken.
        ("2026-11-28T01:30:00.000+02:00", "2026-11-27"),
        ("2024-02-29T12:00:00Z", "2024-02-29"),
    ],
)
def test_day_is_the_utc_day_of_the_record(ts: str, day: str) -> None:
    reports, _ = parse_reports(body(record(ts=ts)))
    assert reports[0].day == day


def test_script_args_carry_exact_integers_and_share_hashes() -> None:
    rec = record(
        ts="2026-11-27T10:11:12.500Z",
        report_billed_ms=1001,
        report_memory_mb=10240,
        report_duration_ms=1000.4,
        report_init_duration_ms=87.25,
        report_cold_start=True,
        report_error="Timeout",
    )
    # Same function and minute, and a call of the next minute: three reports, three hashes.
    later = record(ts="2026-11-27T10:12:00.000Z", request_id="r3")
    (r1, r2, r3), _ = parse_reports(body(rec, {**rec, "request_id": "r2"}, later))
    minute = 1795774260  # 2026-11-27T10:11:00Z
    keys, args = script_args([r1, r2, r3], seen_ttl_s=99, now_s=minute + 3600)
    assert keys == [
        "nimbus:meter:seen:acme:r1",
        "nimbus:meter:seen:acme:r2",
        "nimbus:meter:seen:acme:r3",
        "nimbus:usage:acme:2026-11-27",
        f"nimbus:fnm:acme/hello:{minute}",
        f"nimbus:fnm:acme/hello:{minute + 60}",
    ]
    day_start = 1795737600  # 2026-11-27T00:00:00Z
    expires = [day_start + USAGE_TTL_S, minute + fm.MINUTE_TTL_S, minute + 60 + fm.MINUTE_TTL_S]
    assert args[:6] == [99, 3, 3, *expires]
    bucket = fm.bucket_field(bucket_of(1000.4))
    assert args[6] == f"1 2 hello|$LATEST {bucket} {1001 * 10240} 1 1 1000400 87250 1 40"
    assert args[7] == args[6]
    assert args[8].startswith("1 3 hello|$LATEST ")


def test_a_report_older_than_the_minute_retention_counts_in_usage_only() -> None:
    old, fresh = (
        record(ts="2026-11-27T10:11:12.500Z", request_id="old"),
        record(ts="2026-11-28T11:00:00.000Z"),
    )
    (r_old, r_fresh), _ = parse_reports(body(old, fresh))
    old_minute = 1795774260  # 2026-11-27T10:11:00Z
    # The old report's minute expired a second ago; the fresh one's is live.
    keys, args = script_args(
        [r_old, r_fresh], seen_ttl_s=99, now_s=old_minute + fm.MINUTE_TTL_S + 1
    )
    fresh_minute = fm.minute_start(r_fresh.epoch_s)
    assert keys == [
        "nimbus:meter:seen:acme:old",
        "nimbus:meter:seen:acme:r1",
        "nimbus:usage:acme:2026-11-27",
        "nimbus:usage:acme:2026-11-28",
        f"nimbus:fnm:acme/hello:{fresh_minute}",
    ]
    assert args[1:3] == [2, 3]
    assert str(args[6]).startswith("1 0 hello|$LATEST ")  # usage hash 1, no minute hash
    assert str(args[7]).startswith("2 3 hello|$LATEST ")


def test_a_report_past_every_retention_is_only_marked_seen() -> None:
    (r,), _ = parse_reports(body(record(ts="2026-11-27T10:11:12.500Z")))
    keys, args = script_args([r], seen_ttl_s=99, now_s=r.epoch_s + USAGE_TTL_S + 86400)
    assert keys == ["nimbus:meter:seen:acme:r1"]
    assert args[:3] == [99, 1, 0] and str(args[3]).startswith("0 0 hello|$LATEST ")


# -- usage --------------------------------------------------------------------------------------

TODAY = date(2026, 11, 27)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        ("", "", (date(2026, 11, 1), TODAY)),
        ("2026-10-15", "", (date(2026, 10, 15), TODAY)),
        # Only `to`: that month up to it.
        ("", "2026-02-10", (date(2026, 2, 1), date(2026, 2, 10))),
        ("2026-11-27", "2026-11-27", (TODAY, TODAY)),
        ("2025-11-27", "2026-11-27", (date(2025, 11, 27), TODAY)),  # 366 days, inclusive
    ],
)
def test_day_range(first: str, last: str, expected: tuple[date, date]) -> None:
    assert day_range(first, last, TODAY) == expected


@pytest.mark.parametrize(
    ("first", "last", "field"),
    [
        ("2026-11-28", "2026-11-27", "to:"),
        ("2025-11-26", "2026-11-27", "from:"),  # 367 days
        ("2026-13-01", "", "from:"),
        ("2026-02-30", "", "from:"),
        ("20261101", "", "from:"),
        ("", "tomorrow", "to:"),
        ("", "2026-11-27T00:00:00Z", "to:"),
        ("2026-12-01", "", "to:"),  # after today, the default `to`
    ],
)
def test_bad_ranges_name_the_field(first: str, last: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        day_range(first, last, TODAY)
    assert err.value.message.startswith(field)


def test_days_of_is_inclusive() -> None:
    assert days_of(date(2024, 2, 28), date(2024, 3, 1)) == [
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]


def test_usage_rows_sorted_and_empty_left_out() -> None:
    cells = [
        UsageRow("b", "$LATEST", "2026-11-02", 1, 128),
        UsageRow("a", "10", "2026-11-01", 2, 256),
        UsageRow("a", "2", "2026-11-02", 1, 0),
        UsageRow("a", "2", "2026-11-01", 0, 0),
        UsageRow("a", "$LATEST", "2026-11-03", 5, 640),
    ]
    rows = usage_rows(cells)
    assert [(r.function, r.version, r.day) for r in rows] == [
        ("a", "$LATEST", "2026-11-03"),
        ("a", "2", "2026-11-02"),
        ("a", "10", "2026-11-01"),
        ("b", "$LATEST", "2026-11-02"),
    ]


def test_gb_seconds() -> None:
    assert gb_seconds(1024 * 1000) == 1.0
    assert gb_seconds(128 * 100) == 0.0125


class FakeUsageStore:
    def __init__(self) -> None:
        self.asked: list[tuple[str, list[str]]] = []

    async def usage(self, namespace: str, days: Sequence[str]) -> list[UsageRow]:
        self.asked.append((namespace, list(days)))
        return [
            UsageRow("f", "1", days[0], 3, 3 * 128 * 100),
            UsageRow("f", "$LATEST", days[-1], 1, 1000),
        ]


async def test_usage_api_reads_the_callers_namespace_only() -> None:
    store = FakeUsageStore()
    usage = await UsageApi(store, FakeClock(1795774272.0)).get(WHO, "", "")
    assert store.asked == [("acme", days_of(date(2026, 11, 1), TODAY))]
    assert (usage.first, usage.last, usage.namespace) == (date(2026, 11, 1), TODAY, "acme")
    assert usage.total_requests == 4 and usage.total_mb_ms == 3 * 128 * 100 + 1000


# -- metrics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("minutes", "expected"), [(0, 60), (1, 1), (1440, 1440)])
def test_minutes_window(minutes: int, expected: int) -> None:
    assert check_minutes(minutes) == expected


@pytest.mark.parametrize("minutes", [-1, 1441, 100000])
def test_minutes_out_of_range(minutes: int) -> None:
    with pytest.raises(InvalidArgument, match=r"^minutes: .*1\.\.1440"):
        check_minutes(minutes)


def test_minute_starts_end_with_the_current_minute() -> None:
    assert minute_starts(3599.9, 3) == [3420, 3480, 3540]
    assert minute_starts(3600.0, 1) == [3600]


def test_minute_metrics_from_fields() -> None:
    fields = {
        fm.INVOCATIONS: 4,
        fm.ERRORS: 1,
        fm.THROTTLES: 2,
        fm.COLD_STARTS: 1,
        fm.DURATION_US: 4 * 6000,
        fm.INIT_US: 150_500,
        fm.INITS: 1,
        fm.MAX_MEMORY_MB: 71,
        fm.bucket_field(bucket_of(6.0)): 4,
    }
    m = minute_metrics(120, fields)
    assert (m.start, m.invocations, m.errors, m.throttles, m.cold_starts, m.max_memory_used_mb) == (
        120,
        4,
        1,
        2,
        1,
        71,
    )
    assert (m.duration_p50_ms, m.duration_p90_ms, m.duration_p99_ms) == (6.0, 6.8, 6.98)
    assert (m.duration_avg_ms, m.init_duration_avg_ms) == (6.0, 150.5)
    empty = minute_metrics(180, {})
    assert (empty.invocations, empty.duration_p99_ms, empty.duration_avg_ms) == (0, 0.0, 0.0)


class FakeFunctions:
    async def get(self, who: Principal, name: str) -> FunctionRecord:
        raise NotFound(f"function {name!r} not found")


class FakeMinutes:
    async def minutes(
        self, namespace: str, function: str, starts: Sequence[int]
    ) -> list[dict[str, int]]:
        raise AssertionError("must not be read")


async def test_metrics_of_a_missing_function_is_not_found_and_reads_nothing() -> None:
    api = MetricsApi(FakeFunctions(), FakeMinutes(), FakeClock(0.0))
    with pytest.raises(NotFound):
        await api.get(WHO, "nope", 5)
    with pytest.raises(InvalidArgument):
        await api.get(WHO, "nope", 2000)


# -- the consumer -------------------------------------------------------------------------------


class FakeDelivery:
    def __init__(self, data: bytes, log: list[str]) -> None:
        self.data = data
        self.log = log

    async def ack(self) -> None:
        self.log.append("ack")

    async def nak(self, delay_s: float) -> None:
        self.log.append("nak")


class FakeStore:
    def __init__(self, log: list[str], fail: bool = False, block: bool = False) -> None:
        self.log = log
        self.fail = fail
        self.block = block
        self.seen: set[str] = set()

    async def apply(self, reports: Sequence[Report]) -> int:
        self.log.append(f"apply {len(reports)}")
        if self.block:
            await asyncio.Event().wait()
        if self.fail:
            raise Unavailable("Redis failed")
        new = {r.request_id for r in reports} - self.seen
        self.seen |= new
        return len(new)


class NoFeed:
    async def fetch(self, batch: int, timeout_s: float) -> list[FakeDelivery]:
        return []


async def test_acks_only_after_apply_and_counts_new_reports() -> None:
    log: list[str] = []
    meter = Meter(NoFeed(), FakeStore(log), FakeClock(0), 10)
    deliveries = [
        FakeDelivery(body(record(request_id="a"), record(request_id="b")), log),
        FakeDelivery(b"plain text line\n", log),
        FakeDelivery(body(record(request_id="a")), log),
    ]
    assert await meter.process(deliveries) == 2
    assert log == ["apply 3", "ack", "ack", "ack"]


async def test_failed_apply_naks_and_raises() -> None:
    log: list[str] = []
    meter = Meter(NoFeed(), FakeStore(log, fail=True), FakeClock(0), 10)
    with pytest.raises(Unavailable):
        await meter.process([FakeDelivery(body(record()), log)])
    assert log == ["apply 1", "nak"]


async def test_cancelled_apply_leaves_messages_unacked() -> None:
    log: list[str] = []
    meter = Meter(NoFeed(), FakeStore(log, block=True), FakeClock(0), 10)
    task = asyncio.create_task(meter.process([FakeDelivery(body(record()), log)]))
    while not log:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["apply 1"]


# -- config -------------------------------------------------------------------------------------


def test_documented_example_env() -> None:
    env = {
        "NIMBUS_NATS_URL": "nats://127.0.0.1:4333",
        "NIMBUS_REDIS_URL": "redis://127.0.0.1:6390/0",
        "NIMBUS_LOG_RETENTION_H": "96",
        "NIMBUS_LOG_MAX_MB": "2048",
        "NIMBUS_METER_BATCH": "64",
        "NIMBUS_METER_ACK_WAIT_S": "10",
    }
    cfg = ApiConfig.from_env(env).meter
    assert cfg == MeterConfig(
        "nats://127.0.0.1:4333", "redis://127.0.0.1:6390/0", 96.0, 2048, 64, 10.0
    )
    # A request id is remembered longer than the stream keeps its record.
    assert cfg.seen_ttl_s == 96 * 3600 + 86400
    defaults = ApiConfig.from_env({}).meter
    assert defaults == MeterConfig()
    assert (defaults.log_retention_h, defaults.log_max_mb) == (72.0, 1024)
    assert defaults.seen_ttl_s == 72 * 3600 + 86400 > MIN_SEEN_TTL_S


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NIMBUS_METER_BATCH", "0"),
        ("NIMBUS_REDIS_URL", "localhost:6379"),
        ("NIMBUS_LOG_RETENTION_H", "x"),
    ],
)
def test_bad_env_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        MeterConfig.from_env({name: value})
