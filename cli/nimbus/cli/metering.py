"""`nimbus usage` and `nimbus metrics`: what a namespace is billed and how a function behaves,
minute by minute.

    nimbus usage [--from DAY] [--to DAY]   requests and GB-seconds per function, version and day
    nimbus metrics NAME [--minutes N]      calls, errors, throttles, cold starts, p50/p90/p99 per
                                           minute
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from typing import Any

from nimbus.cli import output
from nimbus.cli.commands import Context
from nimbus.cli.output import as_int

MAX_MINUTES = 1440


def _gb_s(value: Any) -> str:
    return f"{float(value or 0.0):.6f}"


def usage_text(data: Mapping[str, Any], *, color: bool = False) -> str:
    rows = data.get("rows") or []
    span = f"{data.get('from', '?')} .. {data.get('to', '?')}"
    if not rows:
        return f"no usage from {span}"
    header = ("FUNCTION", "VERSION", "DAY", "REQUESTS", "GB-S")
    cells = [
        (
            str(r.get("function", "")),
            str(r.get("version", "")),
            str(r.get("day", "")),
            str(as_int(r.get("requests")) or 0),
            _gb_s(r.get("gb_seconds")),
        )
        for r in rows
    ]
    cells.append(
        (
            "TOTAL",
            "",
            "",
            str(as_int(data.get("total_requests")) or 0),
            _gb_s(data.get("total_gb_seconds")),
        )
    )
    return f"usage {span} (UTC days)\n" + output.render_table(header, cells, color=color)


def _minute_label(start: str, many_days: bool) -> str:
    # start is RFC 3339 UTC, e.g. 2026-11-27T01:02:00.000Z
    return f"{start[5:10]} {start[11:16]}" if many_days else start[11:16]


def _ms(value: Any, calls: int) -> str:
    return f"{float(value or 0.0):.1f}" if calls else "-"


def metrics_text(buckets: Sequence[Mapping[str, Any]], *, color: bool = False) -> str:
    if not buckets:
        return "no metrics"
    many_days = len({str(b.get("start", ""))[:10] for b in buckets}) > 1
    header = (
        "MINUTE(UTC)",
        "CALLS",
        "ERRORS",
        "THROTTLES",
        "COLD",
        "P50_MS",
        "P90_MS",
        "P99_MS",
        "MAX_MB",
    )
    rows = []
    for b in buckets:
        calls = as_int(b.get("invocations")) or 0
        rows.append(
            (
                _minute_label(str(b.get("start", "")), many_days),
                str(calls),
                str(as_int(b.get("errors")) or 0),
                str(as_int(b.get("throttles")) or 0),
                str(as_int(b.get("cold_starts")) or 0),
                _ms(b.get("duration_p50_ms"), calls),
                _ms(b.get("duration_p90_ms"), calls),
                _ms(b.get("duration_p99_ms"), calls),
                str(as_int(b.get("max_memory_used_mb")) or "-") if calls else "-",
            )
        )
    return output.render_table(header, rows, color=color)


def usage(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().get_usage_report(args.from_, args.to)
    if ctx.json:
        ctx.console.print_json(data)
    else:
        ctx.console.print(usage_text(data, color=ctx.console.out_color))
    return 0


def metrics(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().get_metrics(args.name, args.minutes)
    if ctx.json:
        ctx.console.print_json(data)
    else:
        ctx.console.print(metrics_text(data.get("buckets") or [], color=ctx.console.out_color))
    return 0


def _minutes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not 1 <= value <= MAX_MINUTES:
        raise argparse.ArgumentTypeError(f"expected 1..{MAX_MINUTES}, got {value}")
    return value


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "usage",
        parents=common,
        help="requests and GB-seconds per function, version and day",
        description="Billed usage of your namespace per function, version and UTC day. "
        "Without --from/--to: this month so far.",
    )
    p.add_argument(
        "--from",
        dest="from_",
        metavar="DAY",
        help="first day, YYYY-MM-DD (default: the 1st of --to's month)",
    )
    p.add_argument(
        "--to", metavar="DAY", help="last day, YYYY-MM-DD, inclusive (default: today, UTC)"
    )
    p.set_defaults(func=usage)

    p = sub.add_parser(
        "metrics", parents=common, help="a function's calls, errors and durations per minute"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--minutes",
        type=_minutes,
        metavar="N",
        help=f"how many minutes back (default 60, at most {MAX_MINUTES})",
    )
    p.set_defaults(func=metrics)
