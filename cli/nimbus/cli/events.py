"""Async commands: `invocation get ID [--wait]`, `dlq list|replay`, `event-config get|set|rm`.

Thin like manage.py: call the API, print a table or the server's JSON. `trigger add|list|rm` and
the plain `invocation get` live in manage.py; this module adds `--wait` to the latter.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from nimbus.cli import output
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError, read_event
from nimbus.client.client import function_path

FINISHED = ("SUCCEEDED", "FAILED")
POLL_FIRST_S = 0.25
POLL_MAX_S = 2.0


def _print(ctx: Context, data: Any, human: Callable[[], str]) -> int:
    if ctx.json:
        ctx.console.print_json(data)
    else:
        ctx.console.print(human())
    return 0


def _table(ctx: Context, header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    return output.render_table(header, cells, color=ctx.console.out_color)


def _error_text(raw: str, width: int = 60) -> str:
    try:
        err = json.loads(raw) if raw else {}
    except ValueError:
        return raw[:width]
    if not isinstance(err, dict):
        return str(err)[:width]
    text = f"{err.get('errorType', '')}: {err.get('errorMessage', '')}".strip(": ")
    return text if len(text) <= width else text[: width - 1] + "…"


# -- invocation get [--wait] ----------------------------------------------------------------


def invocation_get(
    ctx: Context,
    args: argparse.Namespace,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    client = ctx.client()
    inv = client.get_invocation(args.id)
    if getattr(args, "wait", False):
        deadline = clock() + args.timeout
        delay = POLL_FIRST_S
        while inv.get("status") not in FINISHED:
            if clock() >= deadline:
                ctx.console.error(
                    f"invocation {args.id} is still "
                    f"{inv.get('status', '?')} after {args.timeout:g}s"
                )
                return 1
            sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)
            inv = client.get_invocation(args.id)
    rows = [
        (k, str(inv.get(k) or "-"))
        for k in (
            "invocation_id",
            "function",
            "qualifier",
            "version",
            "status",
            "attempts",
            "request_id",
            "created_at",
            "updated_at",
        )
    ]
    for key in ("result_json", "error_json"):
        if inv.get(key):
            rows.append((key.removesuffix("_json"), str(inv[key])))
    _print(ctx, inv, lambda: output.render_rows(rows, indent=""))
    # Waiting for an outcome in a script: a failed invocation is a failed command.
    return 1 if getattr(args, "wait", False) and inv.get("status") == "FAILED" else 0


# -- dead letters ---------------------------------------------------------------------------


def dlq_list(ctx: Context, args: argparse.Namespace) -> int:
    path = function_path(args.name, "/deadletters") + (f"?limit={args.limit}" if args.limit else "")
    data = ctx.client().request("GET", path)
    letters = data.get("dead_letters") or []
    rows = [
        (
            d.get("invocation_id"),
            d.get("failed_at"),
            d.get("attempts"),
            d.get("reason"),
            _error_text(str(d.get("error_json") or "")),
        )
        for d in letters
    ]
    header = ("INVOCATION", "FAILED", "ATTEMPTS", "REASON", "ERROR")

    def human() -> str:
        if not rows:
            return f"no dead letters of {args.name}"
        more = "\n(more dead letters exist; raise --limit)" if data.get("truncated") else ""
        return _table(ctx, header, rows) + more

    return _print(ctx, data, human)


def dlq_replay(ctx: Context, args: argparse.Namespace) -> int:
    body = {"invocation_ids": list(args.ids or [])}
    data = ctx.client().request("POST", function_path(args.name, "/deadletters:replay"), body)
    ids = data.get("invocation_ids") or []

    def human() -> str:
        if not ids:
            return f"no dead letters of {args.name} to replay"
        return "\n".join(
            [f"replayed {len(ids)} dead letter{'s' if len(ids) != 1 else ''} of {args.name}", *ids]
        )

    return _print(ctx, data, human)


# -- event invoke config --------------------------------------------------------------------


def parse_destination(text: str, flag: str) -> dict[str, str]:
    """function:NAME or subject:SUBJECT; "" clears it."""
    if text == "":
        return {}
    kind, sep, value = text.partition(":")
    if not sep or kind not in ("function", "subject") or not value:
        raise UsageError(
            f"{flag} takes function:NAME or subject:SUBJECT (or '' to clear), not {text!r}"
        )
    return {kind: value}


def _destination_text(dest: dict[str, Any] | None) -> str:
    dest = dest or {}
    if dest.get("function"):
        return f"function:{dest['function']}"
    if dest.get("subject"):
        return f"subject:{dest['subject']}"
    return "-"


def _config_rows(cfg: dict[str, Any]) -> str:
    rows = [
        ("max_retries", str(cfg.get("max_retries", "default (2)"))),
        ("max_event_age_s", str(cfg.get("max_event_age_s", "default (21600)"))),
        ("on_success", _destination_text(cfg.get("on_success"))),
        ("on_failure", _destination_text(cfg.get("on_failure"))),
        ("updated_at", str(cfg.get("updated_at") or "-")),
    ]
    return output.render_rows(rows, indent="")


def event_config_get(ctx: Context, args: argparse.Namespace) -> int:
    cfg = ctx.client().request("GET", function_path(args.name, "/event-invoke-config"))
    return _print(ctx, cfg, lambda: _config_rows(cfg))


def event_config_set(ctx: Context, args: argparse.Namespace) -> int:
    if all(
        v is None for v in (args.max_retries, args.max_event_age, args.on_success, args.on_failure)
    ):
        raise UsageError(
            "give at least one of --max-retries, --max-event-age, --on-success, --on-failure"
        )
    client = ctx.client()
    path = function_path(args.name, "/event-invoke-config")
    current = client.request("GET", path)
    body: dict[str, Any] = {
        k: current[k] for k in ("max_retries", "max_event_age_s") if k in current
    }
    for key in ("on_success", "on_failure"):
        if current.get(key) and any(current[key].values()):
            body[key] = current[key]
    if args.max_retries is not None:
        body["max_retries"] = args.max_retries
    if args.max_event_age is not None:
        body["max_event_age_s"] = args.max_event_age
    if args.on_success is not None:
        body["on_success"] = parse_destination(args.on_success, "--on-success")
    if args.on_failure is not None:
        body["on_failure"] = parse_destination(args.on_failure, "--on-failure")
    cfg = client.request("PUT", path, body)
    return _print(ctx, cfg, lambda: _config_rows(cfg))


def event_config_rm(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("DELETE", function_path(args.name, "/event-invoke-config"))
    return _print(ctx, data, lambda: f"{args.name} uses the default async settings again")


# -- parsers --------------------------------------------------------------------------------


def publish(ctx: Context, args: argparse.Namespace) -> int:
    answer = ctx.client().publish(args.subject, read_event(args.data, ctx.stdin))
    return _print(ctx, answer, lambda: f"{answer.get('subject')} #{answer.get('sequence')}")


def _leaf(sub: Any, group: str, command: str) -> argparse.ArgumentParser | None:
    parent = sub.choices.get(group)
    if parent is None:
        return None
    for action in parent._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(command)
    return None


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    def group(name: str, help_text: str) -> Any:
        p = sub.add_parser(name, parents=common, help=help_text)
        p.set_defaults(func=None, subparser=p)
        return p.add_subparsers(dest=f"{name}_command", metavar="COMMAND")

    get = _leaf(sub, "invocation", "get")
    if get is not None:
        get.add_argument(
            "--wait",
            action="store_true",
            help="poll until it SUCCEEDED or FAILED (exit 1 when FAILED)",
        )
        get.add_argument(
            "--timeout",
            type=float,
            default=300.0,
            metavar="S",
            help="give up waiting after S seconds (default 300)",
        )
        get.set_defaults(func=invocation_get)

    p = sub.add_parser(
        "publish",
        parents=common,
        help="publish a message on a subject of your namespace (its subject triggers run)",
    )
    p.add_argument("subject", metavar="SUBJECT", help="e.g. orders.created (no wildcards)")
    p.add_argument(
        "-d",
        "--data",
        metavar="JSON|@FILE|-",
        help="the message: JSON text, @file to read it from a file, - for stdin (default {})",
    )
    p.set_defaults(func=publish)

    dlq = group("dlq", "list and replay async events that failed every retry")
    p = dlq.add_parser(
        "list", aliases=["ls"], parents=common, help="list a function's dead letters, oldest first"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--limit", type=_non_negative, metavar="N", help="at most N (default 100, at most 1000)"
    )
    p.set_defaults(func=dlq_list)
    p = dlq.add_parser(
        "replay", parents=common, help="queue dead letters again under their invocation ids"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--id",
        dest="ids",
        action="append",
        metavar="INVOCATION_ID",
        help="replay only this one (repeatable); default: all of the function's dead letters",
    )
    p.set_defaults(func=dlq_replay)

    cfg = group("event-config", "retries, event age and destinations of async invocations")
    p = cfg.add_parser("get", parents=common, help="show a function's async settings")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=event_config_get)
    p = cfg.add_parser(
        "set", parents=common, help="change a function's async settings (only the options given)"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--max-retries", type=_non_negative, metavar="N", help="retries after a function error, 0-5"
    )
    p.add_argument(
        "--max-event-age",
        type=_non_negative,
        metavar="S",
        help="dead-letter events older than S seconds (60-21600)",
    )
    p.add_argument(
        "--on-success", metavar="DEST", help="function:NAME or subject:SUBJECT ('' clears)"
    )
    p.add_argument(
        "--on-failure", metavar="DEST", help="function:NAME or subject:SUBJECT ('' clears)"
    )
    p.set_defaults(func=event_config_set)
    p = cfg.add_parser(
        "rm", aliases=["delete"], parents=common, help="back to the default async settings"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=event_config_rm)
