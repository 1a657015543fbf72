"""`nimbus logs NAME [-f] [--request-id ID] [--since 10m|RFC3339] [--tail N | --limit N]`.

Without --limit it shows the newest lines of the window (the last hour unless --since says
otherwise; --tail N of them, 1000 by default), oldest first, as `kubectl logs --tail` does: the
API answers the oldest lines of a window, so the newest are found by paging through it. --limit N
shows the oldest N of the window instead.

One line per log line: timestamp, the request id's first 8 characters ("-" between calls), the
stream (stdout, stderr, or platform for Nimbus' own START/END/REPORT and notes), the message. On a
terminal, platform lines are dim and stderr red; piped, the text is plain. -f follows the log live
over gRPC (nimbus.client.tail) until Ctrl-C; --json prints each line as one JSON object.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from nimbus.cli import output
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError
from nimbus.client.tail import follow_logs
from nimbus.common.logtext import escape_controls

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_LIMIT = 10000
# Without --limit or --tail: the newest this many lines of the window.
DEFAULT_TAIL = 1000
# --tail reads the window a page (MAX_LIMIT lines) at a time, at most this many pages.
MAX_TAIL_PAGES = 20
STREAM_WIDTH = 8
# SGR codes: platform lines dim, stderr red.
DIM, RED = "2", "31"


def rfc3339(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(ts * 1000) % 1000:03d}Z"
    )


def parse_since(text: str, now: float) -> str:
    """'10m', '2h', '30s', '1d' (that long ago) or an RFC 3339 time, as RFC 3339. Pure."""
    text = text.strip()
    match = _DURATION.fullmatch(text)
    if match:
        return rfc3339(now - int(match.group(1)) * _UNIT_S[match.group(2)])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise UsageError(
            f"--since {text!r}: expected a duration such as 10m, 2h, 1d or a time such as "
            "2026-01-02T03:04:05Z"
        )
    return text


def format_line(line: dict[str, Any], *, color: bool) -> str:
    """One log line for people. Pure. Every field is escaped: a function's output cannot move the
    cursor back over the columns or restyle itself as a (dim) platform line; the stream column
    says whose a line is."""
    stream = escape_controls(str(line.get("stream") or ""))
    rid = escape_controls(str(line.get("request_id") or "-")[:8])
    message = escape_controls(str(line.get("message") or "").rstrip("\n"))
    text = f"{line.get('timestamp', '')}  {rid:<8}  {stream:<{STREAM_WIDTH}}  {message}"
    if stream == "platform":
        return output.style(text, DIM, enabled=color)
    if stream == "stderr":
        return output.style(text, RED, enabled=color)
    return text


def _line_key(line: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        str(line.get("timestamp", "")),
        str(line.get("request_id", "")),
        str(line.get("stream", "")),
        str(line.get("message", "")),
    )


def newest_lines(
    get_page: Callable[[str], dict[str, Any]], since: str, count: int
) -> tuple[list[dict[str, Any]], int, bool]:
    """The newest `count` lines of the window from `since` ("" = the server's default), oldest
    first; how many lines the window held; and whether the pages ran out before its end.

    `get_page(since)` answers the oldest MAX_LIMIT lines from `since` on (GetLogs). Each next page
    starts at the previous page's last timestamp; the lines of that millisecond seen already are
    skipped once each."""
    kept: deque[dict[str, Any]] = deque(maxlen=count)
    total = 0
    seen_at_edge: Counter[tuple[str, str, str, str]] = Counter()
    page_since = since
    for _ in range(MAX_TAIL_PAGES):
        data = get_page(page_since)
        lines = data.get("lines") or []
        for line in lines:
            key = _line_key(line)
            if seen_at_edge[key] > 0:
                seen_at_edge[key] -= 1
                continue
            kept.append(line)
            total += 1
        if not data.get("truncated") or not lines:
            return list(kept), total, False
        last = str(lines[-1].get("timestamp", ""))
        if not last or last == page_since:  # a whole page within one millisecond: no way on
            return list(kept), total, True
        seen_at_edge = Counter(_line_key(x) for x in lines if x.get("timestamp") == last)
        page_since = last
    return list(kept), total, True


def _tail(ctx: Context, args: argparse.Namespace, since: str) -> int:
    count = args.tail or DEFAULT_TAIL
    client = ctx.client()
    lines, total, capped = newest_lines(
        lambda page_since: client.get_logs(
            args.name,
            request_id=args.request_id,
            since=page_since or None,
            limit=MAX_LIMIT,
        ),
        since,
        count,
    )
    for line in lines:
        _print(ctx, line)
    window = f"since {since}" if since else "in the last hour"
    if capped:
        ctx.console.warn(
            f"the log {window} holds over {total} lines; these are the newest of the first "
            f"{total}: narrow it with --since (e.g. --since 5m)"
        )
    elif total > len(lines) and not ctx.json:
        ctx.console.info(
            f"(the newest {len(lines)} of {total} lines {window}; --tail N for more, "
            "--limit N for the oldest N)"
        )
    elif not lines and not ctx.json:
        ctx.console.info(f"no log lines for {args.name} {window}")
    return 0


def logs(ctx: Context, args: argparse.Namespace, clock: Callable[[], float] = time.time) -> int:
    since = parse_since(args.since, clock()) if args.since else ""
    if args.limit is not None and not 1 <= args.limit <= MAX_LIMIT:
        raise UsageError(f"--limit {args.limit}: expected 1 to {MAX_LIMIT}")
    if args.tail is not None and args.limit is not None:
        raise UsageError(
            "--tail N (the newest N lines) and --limit N (the oldest N) do not go together"
        )
    if args.follow:
        if args.tail is not None:
            raise UsageError("--tail does not go with -f, which shows new lines as they arrive")
        return _follow(ctx, args, since or rfc3339(clock()))
    if args.limit is None:
        return _tail(ctx, args, since)
    data = ctx.client().get_logs(
        args.name, request_id=args.request_id, since=since or None, limit=args.limit
    )
    lines = data.get("lines") or []
    for line in lines:
        _print(ctx, line)
    if data.get("truncated"):
        last = lines[-1].get("timestamp", "") if lines else ""
        ctx.console.warn(
            f"more lines matched than the {len(lines)} shown; see the rest with --since {last}"
            " or raise --limit (up to 10000)"
        )
    elif not lines and not ctx.json:
        ctx.console.info(
            f"no log lines for {args.name}" + (f" since {since}" if since else " in the last hour")
        )
    return 0


def _follow(ctx: Context, args: argparse.Namespace, since: str) -> int:
    client = ctx.client()
    ctx.console.info(f"following the log of {args.name} from {since} (Ctrl-C to stop)")

    def reconnecting(why: str) -> None:
        ctx.console.info(output.style(f"({why}; reconnecting)", DIM, enabled=ctx.console.err_color))

    for line in follow_logs(
        client, args.name, request_id=args.request_id or "", since=since, on_reconnect=reconnecting
    ):
        _print(ctx, line)
        ctx.console.stdout.flush()
    ctx.console.info(f"{args.name} was deleted; the log ends here")
    return 0


def _print(ctx: Context, line: dict[str, Any]) -> None:
    if ctx.json:
        ctx.console.print_json(line, pretty=False)
    else:
        ctx.console.print(format_line(line, color=ctx.console.out_color))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def add_parser(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "logs",
        parents=common,
        help="show or follow a function's logs",
        description="Print a function's most recent log lines, oldest first (the newest 1000 "
        "of the last hour unless told otherwise: --tail N, --since); --limit N prints the "
        "oldest N of the window instead; -f keeps following new lines until Ctrl-C.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--follow", action="store_true", help="follow new lines as they arrive")
    p.add_argument("--request-id", metavar="ID", help="only the lines of one call")
    p.add_argument(
        "--since", metavar="TIME", help="from this long ago (10m, 2h, 1d) or this time (RFC 3339)"
    )
    p.add_argument(
        "--limit",
        type=_positive_int,
        metavar="N",
        help=f"the oldest N lines of the window (max {MAX_LIMIT})",
    )
    p.add_argument(
        "--tail",
        type=_positive_int,
        metavar="N",
        help=f"the newest N lines of the window (default {DEFAULT_TAIL})",
    )
    p.set_defaults(func=logs)
