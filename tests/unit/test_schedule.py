"""Timer schedules: cron and @every parsing, next ticks, and the timer loop's tick selection."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from nimbus.common import schedule
from nimbus.common.triggers import TriggerRecord
from nimbus.invoker.triggers.timer import Parsed, Tick, due, next_wake, scheduled_event


def ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("@every 10s", 10.0),
        ("@every 1m30s", 90.0),
        ("@every 2h", 7200.0),
        ("@every 1.5s", 1.5),
        ("@EVERY 1d", 86400.0),
    ],
)
def test_every_parses(text, period):
    assert schedule.parse(text) == schedule.Every(period)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("@every", "needs a duration"),
        ("@every 10x", "not a duration"),
        ("@every 500ms", "between"),
        ("@every 400d", "between"),
        ("@often", "unknown macro"),
        ("* * * *", "has 4 fields"),
        ("60 * * * *", "minute: 60 is out of range 0-59"),
        ("* 24 * * *", "hour: 24"),
        ("* * 0 * *", "day-of-month: 0"),
        ("* * * 13 *", "month: 13"),
        ("* * * * 8", "day-of-week: 8"),
        ("*/0 * * * *", "step"),
        ("5-1 * * * *", "backwards"),
        ("a * * * *", "not a number"),
        ("0 0 30 2 *", "never fires"),
        ("1,,2 * * * *", "empty list item"),
    ],
)
def test_bad_schedules_say_why(text, message):
    with pytest.raises(ValueError, match=message):
        schedule.parse(text)


def test_every_ticks_align_to_the_epoch_so_replicas_agree():
    every = schedule.parse("@every 10s")
    assert schedule.next_after(every, 1000.0) == 1010.0
    assert schedule.next_after(every, 1003.7) == 1010.0
    assert schedule.next_after(every, 1009.999) == 1010.0
    assert schedule.ticks_between(every, 1000.0, 1030.0) == [1010.0, 1020.0, 1030.0]


@pytest.mark.parametrize(
    ("expr", "after", "want"),
    [
        ("*/5 * * * *", "2024-03-01T10:02:30", "2024-03-01T10:05:00"),
        ("0 * * * *", "2024-03-01T10:00:00", "2024-03-01T11:00:00"),
        (
            "30 8 * * mon-fri",
            "2024-03-01T09:00:00",
            "2024-03-04T08:30:00",
        ),  # Friday after 8:30 -> Monday
        ("0 0 1 jan *", "2024-03-01T00:00:00", "2025-01-01T00:00:00"),
        ("0 12 29 2 *", "2024-03-01T00:00:00", "2028-02-29T12:00:00"),
        ("@daily", "2024-12-31T23:59:00", "2025-01-01T00:00:00"),
        ("@hourly", "2024-01-01T00:59:59", "2024-01-01T01:00:00"),
        ("0 0 * * 7", "2024-03-01T00:00:00", "2024-03-03T00:00:00"),  # 7 is Sunday
        # Both day fields restricted: either matches (the 13th, or any Friday).
        ("0 0 13 * fri", "2024-03-01T00:00:00", "2024-03-08T00:00:00"),
        ("0 0 13 * fri", "2024-03-09T00:00:00", "2024-03-13T00:00:00"),
        ("15,45 9-10 * * *", "2024-03-01T09:15:00", "2024-03-01T09:45:00"),
    ],
)
def test_cron_next_tick(expr, after, want):
    assert schedule.next_after(schedule.parse(expr), ts(after)) == ts(want)


def trigger(trigger_id: str, sched: str) -> TriggerRecord:
    return TriggerRecord(
        trigger_id=trigger_id, namespace="ns", function="fn", type="timer", schedule=sched
    )


def test_due_fires_ticks_since_the_last_look_but_no_backlog():
    parsed = Parsed()
    every2 = trigger("t1", "@every 2s")
    # A normal step: the tick at 1002 fell due.
    assert [t.at for t in due([every2], parsed, 1001.0, 1002.1)] == [1002.0]
    # A stalled loop (60 s): only ticks within the grace window, never the whole backlog.
    assert [t.at for t in due([every2], parsed, 1000.0, 1060.0)] == [1056.0, 1058.0, 1060.0]
    # A bad schedule is skipped, the others still fire.
    assert [
        t.trigger.trigger_id for t in due([trigger("bad", "nope"), every2], parsed, 1001.0, 1002.0)
    ] == ["t1"]


def test_next_wake_is_the_nearest_tick_or_a_second():
    parsed = Parsed()
    assert next_wake([trigger("a", "@every 10s")], parsed, 1009.5) == 1010.0
    assert next_wake([trigger("a", "@every 10s")], parsed, 1000.0) == 1001.0
    assert next_wake([], parsed, 5.0) == 6.0


def test_a_tick_has_one_invocation_id_on_every_replica():
    a = Tick(trigger("t1", "@every 2s"), 1002.0)
    b = Tick(trigger("t1", "@every 2s"), 1002.0)
    assert a.invocation_id == b.invocation_id
    assert a.invocation_id != Tick(trigger("t1", "@every 2s"), 1004.0).invocation_id
    event = scheduled_event(a)
    assert b'"detail-type": "Scheduled Event"' in event and a.invocation_id.encode() in event


@pytest.mark.parametrize(
    ("text", "period"),
    [
        ("rate(1 minute)", 60.0),
        ("rate(5 minutes)", 300.0),
        ("rate(2 hours)", 7200.0),
        ("rate(1 day)", 86400.0),
        ("rate(30 seconds)", 30.0),
    ],
)
def test_eventbridge_rate_is_every(text, period):
    assert schedule.parse(text) == schedule.Every(period)
    with pytest.raises(ValueError, match="between"):
        schedule.parse("rate(0 minutes)")
