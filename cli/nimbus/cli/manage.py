"""The other commands of the public CLI: versions, aliases, async invokes, logs, usage, triggers.

Thin like commands.py: call the SDK, print a table or the server's JSON.
"""

from __future__ import annotations

import argparse
import time
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

from nimbus.cli import commands, output
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError, read_event
from nimbus.client.client import function_path

LOG_POLL_S = 1.0


def _print(ctx: Context, data: Any, human: Callable[[], str]) -> int:
    if ctx.json:
        ctx.console.print_json(data)
    else:
        ctx.console.print(human())
    return 0


def _table(ctx: Context, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    return output.render_table(header, cells, color=ctx.console.out_color)


# -- invoke --async, invocation get -------------------------------------------------------------


def invoke_async_or_sync(ctx: Context, args: argparse.Namespace) -> int:
    if not args.is_async:
        return commands.invoke(ctx, args)
    event = read_event(args.data, ctx.stdin)
    invocation_id = ctx.client().invoke_async(args.name, event, qualifier=args.qualifier)
    return _print(ctx, {"invocation_id": invocation_id}, lambda: invocation_id)


def invocation_get(ctx: Context, args: argparse.Namespace) -> int:
    inv = ctx.client().get_invocation(args.id)
    rows = [(k, str(inv.get(k) or "-")) for k in
            ("invocation_id", "function", "version", "status", "attempts", "created_at", "updated_at")]
    for key in ("result_json", "error_json"):
        if inv.get(key):
            rows.append((key.removesuffix("_json"), str(inv[key])))
    return _print(ctx, inv, lambda: output.render_rows(rows, indent=""))


# -- versions and aliases -----------------------------------------------------------------------


def version_publish(ctx: Context, args: argparse.Namespace) -> int:
    v = ctx.client().publish_version(args.name, description=args.description)
    return _print(ctx, v, lambda: f"published version {v.get('version', '?')} of {args.name}"
                  f" (code sha256 {v.get('code_sha256') or '-'})")


def version_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", function_path(args.name, "/versions"))
    rows = [(v.get("version"), v.get("code_sha256", "")[:12], v.get("created_at"), v.get("description"))
            for v in data.get("versions") or []]
    return _print(ctx, data, lambda: _table(ctx, ("VERSION", "CODE", "CREATED", "DESCRIPTION"), rows))


def _parse_routing(text: str | None) -> tuple[str | None, float | None]:
    if text is None:
        return None, None
    version, sep, weight = text.partition("=")
    try:
        value = float(weight)
    except ValueError:
        value = -1.0
    if not sep or not version or not 0.0 <= value <= 1.0:
        raise UsageError(f"--routing expects VERSION=WEIGHT with a weight from 0 to 1, got {text!r}")
    return version, value


def alias_set(ctx: Context, args: argparse.Namespace) -> int:
    routing_version, weight = _parse_routing(args.routing)
    a = ctx.client().put_alias(args.name, args.alias, args.version, routing_version=routing_version,
                               routing_weight=weight, description=args.description)
    extra = f", {weight:g} to version {routing_version}" if routing_version else ""
    return _print(ctx, a, lambda: f"alias {args.alias} of {args.name} -> version {args.version}{extra}")


def alias_get(ctx: Context, args: argparse.Namespace) -> int:
    a = ctx.client().get_alias(args.name, args.alias)
    routing = a.get("routing") or {}
    rows = [("alias", str(a.get("alias", args.alias))), ("version", str(a.get("version") or "-"))]
    if routing.get("version"):
        rows.append(("routing", f"{routing.get('weight', 0):g} to version {routing['version']}"))
    return _print(ctx, a, lambda: output.render_rows(rows, indent=""))


def alias_delete(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().delete_alias(args.name, args.alias)
    return _print(ctx, data, lambda: f"deleted alias {args.alias} of {args.name}")


# -- logs and usage -----------------------------------------------------------------------------


def _log_line(line: dict[str, Any]) -> str:
    rid = str(line.get("request_id") or "-")[:8]
    return f"{line.get('timestamp', '')} {rid} {str(line.get('message', '')).rstrip()}"


def logs(ctx: Context, args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    client = ctx.client()
    since, seen = args.since, set()
    while True:
        data = client.get_logs(args.name, request_id=args.request_id, since=since, limit=args.limit)
        for line in data.get("lines") or []:
            key = (line.get("timestamp"), line.get("request_id"), line.get("stream"), line.get("message"))
            if key in seen:
                continue
            seen.add(key)
            if ctx.json:
                ctx.console.print_json(line, pretty=False)
            else:
                ctx.console.print(_log_line(line))
            since = line.get("timestamp") or since
        ctx.console.stdout.flush()
        if not args.follow:
            return 0
        sleep(LOG_POLL_S)


def usage(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", "/v1/usage" + _usage_query(args))
    rows = [(r.get("day"), r.get("namespace"), r.get("function"), r.get("version"), r.get("requests", 0),
             f"{float(r.get('gb_seconds', 0)):.3f}") for r in data.get("rows") or []]
    header = ("DAY", "NAMESPACE", "FUNCTION", "VERSION", "REQUESTS", "GB-SECONDS")
    return _print(ctx, data, lambda: _table(ctx, header, rows) if rows else "no usage recorded")


def _usage_query(args: argparse.Namespace) -> str:
    params = {k: v for k, v in (("from", args.from_), ("to", args.to)) if v}
    return "?" + urllib.parse.urlencode(params) if params else ""


# -- triggers -----------------------------------------------------------------------------------


def trigger_add(ctx: Context, args: argparse.Namespace) -> int:
    if args.type == "timer" and not args.schedule:
        raise UsageError("a timer trigger needs --schedule, e.g. 'rate(1 minute)' or a cron expression")
    if args.type == "subject" and not args.subject:
        raise UsageError("a subject trigger needs --subject")
    t = ctx.client().create_trigger(args.name, args.type, schedule=args.schedule, subject=args.subject,
                                    qualifier=args.qualifier)
    return _print(ctx, t, lambda: f"added {args.type} trigger {t.get('id', '?')} to {args.name}")


def trigger_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", function_path(args.name, "/triggers"))
    rows = [(t.get("id"), t.get("type"), t.get("schedule") or t.get("subject"), t.get("qualifier"),
             t.get("created_at")) for t in data.get("triggers") or []]
    header = ("ID", "TYPE", "SCHEDULE/SUBJECT", "QUALIFIER", "CREATED")
    return _print(ctx, data, lambda: _table(ctx, header, rows) if rows else f"no triggers on {args.name}")


def trigger_delete(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().delete_trigger(args.name, args.id)
    return _print(ctx, data, lambda: f"deleted trigger {args.id} of {args.name}")


# -- parsers ------------------------------------------------------------------------------------


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    def group(name: str, help_text: str) -> Any:
        p = sub.add_parser(name, parents=common, help=help_text)
        p.set_defaults(func=None, subparser=p)
        return p.add_subparsers(dest=f"{name}_command", metavar="COMMAND")

    versions = group("version", "publish and list immutable versions")
    p = versions.add_parser("publish", parents=common, help="publish the current code and config")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", metavar="TEXT")
    p.set_defaults(func=version_publish)
    p = versions.add_parser("list", aliases=["ls"], parents=common, help="list the versions")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=version_list)

    aliases = group("alias", "point aliases at versions")
    p = aliases.add_parser("set", parents=common, help="create or move an alias")
    p.add_argument("name", metavar="NAME")
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("version", metavar="VERSION")
    p.add_argument("--routing", metavar="VERSION=WEIGHT", help="send this share of calls to another version")
    p.add_argument("--description", metavar="TEXT")
    p.set_defaults(func=alias_set)
    for verb, func, aka in (("get", alias_get, []), ("delete", alias_delete, ["rm"])):
        p = aliases.add_parser(verb, aliases=aka, parents=common, help=f"{verb} an alias")
        p.add_argument("name", metavar="NAME")
        p.add_argument("alias", metavar="ALIAS")
        p.set_defaults(func=func)

    p = sub.add_parser("logs", parents=common, help="show a function's logs")
    p.add_argument("name", metavar="NAME")
    p.add_argument("-f", "--follow", action="store_true", help="keep polling for new lines")
    p.add_argument("--request-id", metavar="ID")
    p.add_argument("--since", metavar="TIME", help="only lines from this time on (RFC 3339)")
    p.add_argument("--limit", type=int, metavar="N")
    p.set_defaults(func=logs)

    p = sub.add_parser("usage", parents=common, help="requests and GB-seconds per function and day")
    p.add_argument("--from", dest="from_", metavar="DAY")
    p.add_argument("--to", metavar="DAY")
    p.set_defaults(func=usage)

    triggers = group("trigger", "run functions on a timer or a NATS subject")
    p = triggers.add_parser("add", parents=common, help="add a trigger")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--type", required=True, choices=("timer", "subject", "http"))
    p.add_argument("--schedule", metavar="EXPR")
    p.add_argument("--subject", metavar="SUBJECT")
    p.add_argument("-q", "--qualifier", metavar="Q")
    p.set_defaults(func=trigger_add)
    p = triggers.add_parser("list", aliases=["ls"], parents=common, help="list a function's triggers")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=trigger_list)
    p = triggers.add_parser("rm", aliases=["delete"], parents=common, help="remove a trigger")
    p.add_argument("name", metavar="NAME")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=trigger_delete)

    invocations = group("invocation", "inspect async invocations")
    p = invocations.add_parser("get", parents=common, help="status and result of an async invocation")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=invocation_get)
