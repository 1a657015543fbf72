"""GetUsage's core: the billed requests and GB-seconds of the caller's namespace per function,
version and UTC day, over an inclusive range of days."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from nimbus.common.auth import Principal
from nimbus.common.clock import Clock
from nimbus.common.errors import InvalidArgument

MAX_DAYS = 366
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class UsageRow:
    function: str
    version: str
    day: str
    requests: int
    mb_ms: int

    @property
    def gb_seconds(self) -> float:
        return gb_seconds(self.mb_ms)


@dataclass(frozen=True, slots=True)
class Usage:
    namespace: str
    first: date
    last: date
    rows: list[UsageRow]

    @property
    def total_requests(self) -> int:
        return sum(r.requests for r in self.rows)

    @property
    def total_mb_ms(self) -> int:
        return sum(r.mb_ms for r in self.rows)


def gb_seconds(mb_ms: int) -> float:
    """MB-ms to GB-s (1 GB = 1024 MB), divided once,
    so the same MB-ms always give the same float."""
    return mb_ms / 1024 / 1000


def parse_day(field: str, text: str) -> date:
    if not _DAY.fullmatch(text):
        raise InvalidArgument(f"{field}: {text!r} is not a day; expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidArgument(f"{field}: {text!r} is not a day of the calendar") from None


def day_range(first_text: str, last_text: str, today: date) -> tuple[date, date]:
    """The inclusive range asked for. `to` defaults to today (UTC) and `from` to the first day of
    `to`'s month, so no argument means this month so far."""
    last = parse_day("to", last_text) if last_text else today
    first = parse_day("from", first_text) if first_text else last.replace(day=1)
    if last < first:
        raise InvalidArgument(f"to: {last} is before from {first}")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise InvalidArgument(
            f"from: the range {first}..{last} spans {days} days; at most {MAX_DAYS} at once"
        )
    return first, last


def days_of(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def usage_rows(cells: Sequence[UsageRow]) -> list[UsageRow]:
    """Rows by function, version (numerically, $LATEST first), then day; empty ones left out."""
    rows = [c for c in cells if c.requests or c.mb_ms]
    return sorted(rows, key=lambda r: (r.function, _version_order(r.version), r.day))


def _version_order(version: str) -> tuple[int, int]:
    return (1, int(version)) if version.isdigit() else (0, 0)


class UsageStore(Protocol):
    async def usage(self, namespace: str, days: Sequence[str]) -> list[UsageRow]: ...


class UsageApi:
    def __init__(self, store: UsageStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def get(self, who: Principal, first: str, last: str) -> Usage:
        # Admin keys too see only their own namespace: usage is per tenant.
        today = datetime.fromtimestamp(self._clock.now(), UTC).date()
        start, end = day_range(first, last, today)
        cells = await self._store.usage(who.namespace, days_of(start, end))
        return Usage(who.namespace, start, end, usage_rows(cells))
