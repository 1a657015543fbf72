"""Timer schedules: five-field cron expressions (UTC) and `@every <duration>`. Pure.

`parse(text)` returns a Schedule or raises ValueError with a message fit for the user;
`next_after(schedule, t)` is the first tick strictly after the epoch time t.

`rate(5 minutes)` (EventBridge's form) is `@every 5m`.
`@every 10s` ticks on the multiples of its period since the epoch, so every replica computes the
same ticks without talking to the others. Cron follows Vixie cron: `*`, lists, ranges, steps,
month and weekday names, 7 as Sunday, and when both day-of-month and day-of-week are restricted a
day matching either fires (a field that starts with `*`, such as `*/2`, counts as unrestricted
for that rule, as in Vixie cron). tests/unit/test_schedule_vs_croniter.py checks it against
croniter, where the two agree. The macros @yearly @annually @monthly @weekly @daily @midnight
@hourly stand for their usual expressions.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MIN_EVERY_S = 1.0
MAX_EVERY_S = 366 * 86400.0

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {name: i for i, name in enumerate(calendar.month_abbr) if name}
_MONTHS = {k.lower(): v for k, v in _MONTHS.items()}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_RATE = re.compile(r"rate\(\s*(\d+)\s+(seconds?|minutes?|hours?|days?)\s*\)")
_RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}


@dataclass(frozen=True, slots=True)
class Every:
    period_s: float


@dataclass(frozen=True, slots=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    # 0 = Sunday … 6 = Saturday
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    def day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        # Vixie cron: a field that starts with '*' (`*`, `*/2`) makes the two an AND; only when
        # both are restricted does a day matching either fire. `*/2` is still every other day.
        if self.any_day or self.any_weekday:
            return dom and dow
        return dom or dow


Schedule = Every | Cron


def parse_duration(text: str) -> float:
    """`10s`, `1m30s`, `500ms`, `2h`, `1d` → seconds."""
    compact = text.strip().lower().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(compact):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(compact):
        raise ValueError(f"{text.strip()!r} is not a duration such as 10s, 5m, 1h30m")
    return total


def parse(text: str) -> Schedule:
    spec = " ".join(text.split())
    if not spec:
        raise ValueError(
            "empty schedule: use a cron expression such as '*/5 * * * *' or '@every 10s'"
        )
    lowered = spec.lower()
    rate = _RATE.fullmatch(lowered)
    if rate:
        # EventBridge's rate(5 minutes): the same as @every 5m.
        period = int(rate.group(1)) * _RATE_UNITS[rate.group(2).rstrip("s")]
        if not MIN_EVERY_S <= period <= MAX_EVERY_S:
            raise ValueError(
                f"{spec!r} must be between {MIN_EVERY_S:g}s and {MAX_EVERY_S / 86400:g} days"
            )
        return Every(period)
    if lowered.startswith("@every"):
        rest = spec[len("@every") :].strip()
        if not rest:
            raise ValueError("'@every' needs a duration, e.g. '@every 10s'")
        period = parse_duration(rest)
        if not MIN_EVERY_S <= period <= MAX_EVERY_S:
            raise ValueError(
                f"'@every {rest}' must be between {MIN_EVERY_S:g}s and {MAX_EVERY_S / 86400:g} days"
            )
        return Every(period)
    if lowered.startswith("@"):
        if lowered not in _MACROS:
            raise ValueError(
                f"unknown macro {spec!r}; use one of @every <duration>, {', '.join(_MACROS)}"
            )
        lowered = _MACROS[lowered]
    fields = lowered.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"{spec!r} has {len(fields)} fields; a cron expression has 5: "
            "minute hour day-of-month month day-of-week"
        )
    minute, hour, dom, month, dow = fields
    weekdays = _field(dow, "day-of-week", 0, 7, _DAYS)
    if 7 in weekdays:
        weekdays = (weekdays - {7}) | {0}
    cron = Cron(
        minutes=_field(minute, "minute", 0, 59, {}),
        hours=_field(hour, "hour", 0, 23, {}),
        days=_field(dom, "day-of-month", 1, 31, {}),
        months=_field(month, "month", 1, 12, _MONTHS),
        weekdays=frozenset(weekdays),
        any_day=dom.startswith("*"),
        any_weekday=dow.startswith("*"),
    )
    if not _ever_fires(cron):
        raise ValueError(f"{spec!r} never fires (no such day)")
    return cron


def _value(token: str, what: str, low: int, high: int, names: dict[str, int]) -> int:
    if token in names:
        return names[token]
    if not token.isdigit():
        raise ValueError(
            f"{what}: {token!r} is not a number"
            + (f" or a name ({', '.join(names)})" if names else "")
        )
    value = int(token)
    if not low <= value <= high:
        raise ValueError(f"{what}: {value} is out of range {low}-{high}")
    return value


def _field(text: str, what: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        if not part:
            raise ValueError(f"{what}: empty list item in {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"{what}: step {step_text!r} must be a positive whole number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            start, end = _value(a, what, low, high, names), _value(b, what, low, high, names)
            if start > end:
                raise ValueError(f"{what}: range {base!r} runs backwards")
        else:
            start = _value(base, what, low, high, names)
            end = high if slash else start
        out.update(range(start, end + 1, step))
    return frozenset(out)


def _ever_fires(cron: Cron) -> bool:
    """Rejects day/month combinations that never exist (e.g. 30 2 *)."""
    if cron.any_day or not cron.any_weekday:
        # Every day of the month, or a weekday restriction (alone or OR-ed with days): always comes.
        return True
    longest = {
        1: 31,
        2: 29,
        3: 31,
        4: 30,
        5: 31,
        6: 30,
        7: 31,
        8: 31,
        9: 30,
        10: 31,
        11: 30,
        12: 31,
    }
    return any(day <= longest[m] for m in cron.months for day in cron.days)


def next_after(schedule: Schedule, t: float) -> float:
    """The first tick strictly after t (epoch seconds)."""
    if isinstance(schedule, Every):
        period = schedule.period_s
        ticks = int(t // period) + 1
        tick = ticks * period
        # Float rounding: never return a tick at or before t.
        return tick if tick > t else tick + period
    return _cron_next(schedule, t)


def _cron_next(cron: Cron, t: float) -> float:
    start = datetime.fromtimestamp(t, UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    # Five years cover every leap-day schedule; _ever_fires rejected the impossible ones.
    for _ in range(5 * 366 + 1):
        if cron.day_matches(day):
            for hour in sorted(cron.hours):
                for minute in sorted(cron.minutes):
                    candidate = day.replace(hour=hour, minute=minute)
                    if candidate >= start:
                        return candidate.timestamp()
        day += timedelta(days=1)
    raise ValueError("schedule never fires")


def ticks_between(schedule: Schedule, after: float, until: float, limit: int = 1000) -> list[float]:
    """Every tick in (after, until], at most `limit` of them."""
    out: list[float] = []
    tick = next_after(schedule, after)
    while tick <= until and len(out) < limit:
        out.append(tick)
        tick = next_after(schedule, tick)
    return out
