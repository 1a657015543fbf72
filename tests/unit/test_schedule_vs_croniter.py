"""A differential test of Nimbus' cron (nimbus.common.schedule, hand-written: it also parses
`@every` and `rate()`, and its errors name the field) against croniter, the maintained library:
for random five-field expressions and random start times, both must give the same next ticks."""

from __future__ import annotations

from datetime import UTC, datetime

from croniter import croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from nimbus.common import schedule


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    single = value.map(str)
    # a < b: croniter reads a one-value range such as `0-0` in day-of-week as `*` (a croniter
    # bug; Nimbus reads it as Vixie cron does, Sunday), see test_a_one_value_range.
    span = st.tuples(value, value).filter(lambda ab: ab[0] != ab[1])
    span = span.map(lambda ab: f"{min(ab)}-{max(ab)}")
    step = st.tuples(st.sampled_from(["*", f"{low}-{high}"]), st.integers(1, high - low + 1)).map(
        lambda sb: f"{sb[0]}/{sb[1]}"
    )
    part = st.one_of(single, span, step)
    listed = st.lists(part, min_size=1, max_size=3).map(",".join)
    return st.one_of(st.just("*"), listed)


def _same_day_rule(fields: tuple[str, str, str, str, str]) -> bool:
    """Where the two libraries read day fields differently: a star inside a day field that is not
    just `*` (`*/2`, `1,*/2`). Vixie cron (and Nimbus) decide AND or OR by the field's first
    character; croniter by its own reading. Both agree on everything else."""
    return all(f == "*" or "*" not in f for f in (fields[2], fields[4]))


EXPRESSIONS = (
    st.tuples(_field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 6))
    .filter(_same_day_rule)
    .map(" ".join)
)
# Epoch seconds from 2000 to 2100, whole and fractional.
STARTS = st.floats(946_684_800, 4_102_444_800, allow_nan=False)


@settings(max_examples=400, deadline=None)
@given(EXPRESSIONS, STARTS)
def test_next_ticks_agree_with_croniter(expression: str, start: float) -> None:
    ours = schedule.parse(expression)
    theirs = croniter(expression, datetime.fromtimestamp(start, UTC))
    t = start
    for _ in range(3):
        t = schedule.next_after(ours, t)
        expected = theirs.get_next(float)
        assert t == expected, (expression, start, datetime.fromtimestamp(t, UTC))


def test_a_known_case_by_hand() -> None:
    # The 13th, or any Friday, at 09:30 (both days restricted: either fires, as in Vixie cron).
    ours = schedule.parse("30 9 13 * 5")
    start = datetime(2030, 9, 1, tzinfo=UTC).timestamp()
    ticks = schedule.ticks_between(ours, start, start + 14 * 86400)
    theirs = croniter("30 9 13 * 5", datetime.fromtimestamp(start, UTC))
    assert ticks == [theirs.get_next(float) for _ in ticks]
    assert [datetime.fromtimestamp(x, UTC).day for x in ticks] == [6, 13]


def test_a_one_value_range_is_that_value() -> None:
    start = datetime(2000, 1, 1, tzinfo=UTC).timestamp()  # a Saturday
    sunday = datetime(2000, 1, 2, tzinfo=UTC).timestamp()
    assert schedule.next_after(schedule.parse("* * * * 0-0"), start) == sunday
    assert schedule.next_after(schedule.parse("* * * * 0"), start) == sunday


def test_a_stepped_star_in_a_day_field_ands_as_vixie_cron() -> None:
    start = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
    # dom 2 and dow `*/1`: only the 2nd (croniter would fire every day).
    assert (
        schedule.next_after(schedule.parse("0 0 2 * */1"), start)
        == datetime(2000, 1, 2, tzinfo=UTC).timestamp()
    )
    # `*/2` in day-of-week alone: Sunday, Tuesday, Thursday, Saturday.
    tue = datetime(2017, 3, 21, 23, 59, tzinfo=UTC).timestamp()
    thu = datetime(2017, 3, 23, tzinfo=UTC).timestamp()
    assert schedule.next_after(schedule.parse("* * * * */2"), tue) == thu
