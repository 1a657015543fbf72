"""The other commands of the public CLI: versions, aliases, keys, async invokes, logs, triggers.

Thin like commands.py: call the SDK, print a table or the server's JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

from nimbus.cli import commands, logs, output
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError, read_event
from nimbus.client.client import function_path


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
    rows = [
        (k, str(inv.get(k) or "-"))
        for k in (
            "invocation_id",
            "function",
            "version",
            "status",
            "attempts",
            "created_at",
            "updated_at",
        )
    ]
    for key in ("result_json", "error_json"):
        if inv.get(key):
            rows.append((key.removesuffix("_json"), str(inv[key])))
    return _print(ctx, inv, lambda: output.render_rows(rows, indent=""))


# -- versions and aliases -----------------------------------------------------------------------


def _version_key(v: dict[str, Any]) -> tuple[int, str]:
    text = str(v.get("version", ""))
    return (int(text), "") if text.isdigit() else (1 << 62, text)


def version_publish(ctx: Context, args: argparse.Namespace) -> int:
    v = ctx.client().publish_version(args.name, description=args.description)
    sha = str(v.get("code_sha256") or "")
    return _print(
        ctx,
        v,
        lambda: (
            f"published version {v.get('version', '?')} of {args.name}"
            f" (code sha256 {sha[:12] or '-'})"
        ),
    )


def version_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", function_path(args.name, "/versions"))
    versions = sorted(data.get("versions") or [], key=_version_key)
    rows = [
        (
            v.get("version"),
            str(v.get("code_sha256") or "")[:12],
            v.get("created_at"),
            v.get("description"),
        )
        for v in versions
    ]
    header = ("VERSION", "CODE", "CREATED", "DESCRIPTION")
    return _print(
        ctx,
        data,
        lambda: (
            _table(ctx, header, rows)
            if rows
            else f"no versions of {args.name} yet; "
            f"publish one with `nimbus version publish {args.name}`"
        ),
    )


def version_get(ctx: Context, args: argparse.Namespace) -> int:
    v = ctx.client().get_version(args.name, args.version)
    config = v.get("config") or {}
    rows = [
        ("version", str(v.get("version") or args.version)),
        ("description", str(v.get("description") or "-")),
        ("code sha256", str(v.get("code_sha256") or config.get("code_sha256") or "-")),
        ("created", str(v.get("created_at") or "-")),
    ]
    rows += [r for r in output.function_summary(config) if r[0] not in ("name", "code sha256")]
    return _print(
        ctx,
        v,
        lambda: (
            ctx.console.heading(f"version {rows[0][1]} of {args.name}")
            + "\n"
            + output.render_rows(rows[1:])
        ),
    )


def version_delete(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().delete_version(args.name, args.version)
    return _print(ctx, data, lambda: f"deleted version {args.version} of {args.name}")


def parse_weight(text: str | None) -> tuple[str | None, float | None]:
    """`--weight VERSION=FRACTION` into (version, fraction);
    a bad value is a usage error (exit 2)."""
    if text is None:
        return None, None
    version, sep, fraction = text.partition("=")
    version, fraction = version.strip(), fraction.strip()
    try:
        value = float(fraction)
    except ValueError:
        value = float("nan")
    if not sep or not version or not 0.0 <= value <= 1.0:  # NaN fails the comparison too
        raise UsageError(
            f"--weight must be VERSION=FRACTION with 0 ≤ FRACTION ≤ 1 (e.g. 2=0.1), got {text!r}"
        )
    return version, value


def format_percent(weight: float) -> str:
    return f"{weight * 100:.4g}%"


def routing_text(alias: dict[str, Any]) -> str | None:
    """`10% to version 4` for an alias that routes a share of calls to a second version."""
    routing = alias.get("routing") or {}
    if not routing.get("version"):
        return None
    try:
        weight = float(routing.get("weight") or 0.0)
    except (TypeError, ValueError):
        weight = 0.0
    return f"{format_percent(weight)} to version {routing['version']}"


def alias_set(ctx: Context, args: argparse.Namespace) -> int:
    version = args.version or args.version_pos
    if not version:
        raise UsageError("alias set needs --version VERSION (the version the alias points to)")
    if args.version and args.version_pos and args.version != args.version_pos:
        raise UsageError(f"two versions given: {args.version_pos} and --version {args.version}")
    routing_version, weight = parse_weight(args.weight)
    if routing_version is not None and routing_version == version:
        raise UsageError(
            f"--weight names version {routing_version}, which the alias already points to; "
            "name the second version that gets a share of the calls"
        )
    a = ctx.client().put_alias(
        args.name,
        args.alias,
        version,
        routing_version=routing_version,
        routing_weight=weight,
        description=args.description,
    )

    def human() -> str:
        text = f"alias {args.alias} of {args.name} -> version {a.get('version') or version}"
        # The server's view of the routing; what was asked for when its answer leaves it out.
        extra = routing_text(a) or routing_text(
            {"routing": {"version": routing_version, "weight": weight}}
        )
        return text + (f", {extra}" if extra else "")

    return _print(ctx, a, human)


def alias_get(ctx: Context, args: argparse.Namespace) -> int:
    a = ctx.client().get_alias(args.name, args.alias)
    rows = [
        ("alias", str(a.get("alias") or args.alias)),
        ("function", str(a.get("name") or args.name)),
        ("version", str(a.get("version") or "-")),
    ]
    routing = routing_text(a)
    if routing:
        rows.append(("routing", routing))
    rows.append(("description", str(a.get("description") or "-")))
    return _print(ctx, a, lambda: output.render_rows(rows, indent=""))


def alias_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", function_path(args.name, "/aliases"))
    aliases = sorted(data.get("aliases") or [], key=lambda a: str(a.get("alias", "")))
    rows = [
        (a.get("alias"), a.get("version"), routing_text(a), a.get("description")) for a in aliases
    ]
    header = ("ALIAS", "VERSION", "ROUTING", "DESCRIPTION")
    return _print(
        ctx, data, lambda: _table(ctx, header, rows) if rows else f"no aliases on {args.name}"
    )


def alias_delete(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().delete_alias(args.name, args.alias)
    return _print(ctx, data, lambda: f"deleted alias {args.alias} of {args.name}")


# -- keys ---------------------------------------------------------------------------------------

KEY_SHOWN_ONCE = "this is the only time the key is shown; it cannot be shown again, so store it now"


def keys_create(ctx: Context, args: argparse.Namespace) -> int:
    k = ctx.client().create_key(
        namespace=args.namespace, description=args.description, admin=args.admin
    )

    def human() -> str:
        kind = "admin key" if k.get("admin") else "key"
        ns = k.get("namespace") or args.namespace or "-"
        rows = [
            ("api key", str(k.get("api_key") or "-")),
            ("key id", str(k.get("key_id") or "-")),
            ("namespace", str(ns)),
            ("admin", "yes" if k.get("admin") else "no"),
            ("description", str(k.get("description") or "-")),
        ]
        headline = " ".join(
            str(w) for w in ("created", kind, k.get("key_id"), "in namespace", ns) if w
        )
        return ctx.console.ok(headline) + "\n" + output.render_rows(rows)

    _print(ctx, k, human)
    if k.get("api_key"):
        ctx.console.info(f"{output.PROG}: note: {KEY_SHOWN_ONCE}")
    return 0


def keys_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", "/v1/keys")
    keys = sorted(
        data.get("keys") or [],
        key=lambda k: (str(k.get("namespace", "")), str(k.get("created_at", ""))),
    )
    rows = [
        (
            k.get("key_id"),
            k.get("namespace"),
            "yes" if k.get("admin") else "no",
            k.get("description"),
            k.get("created_at"),
        )
        for k in keys
    ]
    header = ("KEY ID", "NAMESPACE", "ADMIN", "DESCRIPTION", "CREATED")
    return _print(ctx, data, lambda: _table(ctx, header, rows) if rows else "no keys")


def keys_revoke(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().revoke_key(args.key_id)
    return _print(ctx, data, lambda: f"revoked key {args.key_id}")


# -- triggers -----------------------------------------------------------------------------------


def trigger_add(ctx: Context, args: argparse.Namespace) -> int:
    if args.type == "timer" and not args.schedule:
        raise UsageError(
            "a timer trigger needs --schedule, e.g. 'rate(1 minute)' or a cron expression"
        )
    if args.type == "subject" and not args.subject:
        raise UsageError("a subject trigger needs --subject")
    if args.payload_format and args.type != "http":
        raise UsageError("--payload-format is for http triggers")
    t = ctx.client().create_trigger(
        args.name,
        args.type,
        schedule=args.schedule,
        subject=args.subject,
        qualifier=args.qualifier,
        payload_format=args.payload_format,
    )
    url = trigger_url(ctx.client().endpoint, t)

    def human() -> str:
        line = f"added {args.type} trigger {t.get('id', '?')} to {args.name}"
        if t.get("payload_format"):
            line += f" (payload format {t['payload_format']})"
        return f"{line}\n  url: {url} (no API key needed)" if url else line

    return _print(ctx, t, human)


def trigger_url(endpoint: str, trigger: dict[str, Any]) -> str:
    """The full URL of an http trigger: the gateway's address and the trigger's public path."""
    path = str(trigger.get("url") or "")
    if not path or "://" in path:
        return path
    return endpoint.rstrip("/") + "/" + path.lstrip("/")


def _payload(trigger: dict[str, Any]) -> str:
    """An http trigger's payload format as the list shows it (servers before it existed: none)."""
    return f"payload {trigger['payload_format']}" if trigger.get("payload_format") else ""


def trigger_list(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    data = client.request("GET", function_path(args.name, "/triggers"))
    rows = [
        (
            t.get("id"),
            t.get("type"),
            t.get("schedule") or t.get("subject") or _payload(t),
            t.get("qualifier"),
            t.get("created_at"),
            trigger_url(client.endpoint, t),
        )
        for t in data.get("triggers") or []
    ]
    header = ("ID", "TYPE", "SCHEDULE/SUBJECT/FORMAT", "QUALIFIER", "CREATED", "URL")
    return _print(
        ctx, data, lambda: _table(ctx, header, rows) if rows else f"no triggers on {args.name}"
    )


def trigger_delete(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().delete_trigger(args.name, args.id)
    return _print(ctx, data, lambda: f"deleted trigger {args.id} of {args.name}")


# -- parsers ------------------------------------------------------------------------------------


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    def group(name: str, help_text: str) -> Any:
        p = sub.add_parser(name, parents=common, help=help_text)
        p.set_defaults(func=None, subparser=p)
        return p.add_subparsers(dest=f"{name}_command", metavar="COMMAND")

    versions = group("version", "publish, list and delete immutable versions")
    p = versions.add_parser(
        "publish", parents=common, help="publish $LATEST's code and config as a new version"
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("--description", metavar="TEXT")
    p.set_defaults(func=version_publish)
    p = versions.add_parser("list", aliases=["ls"], parents=common, help="list the versions")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=version_list)
    p = versions.add_parser("get", parents=common, help="show one version")
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(func=version_get)
    p = versions.add_parser(
        "delete",
        aliases=["rm"],
        parents=common,
        help="delete a version (refused while an alias points to it)",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(func=version_delete)

    aliases = group("alias", "point aliases at versions, with weighted routing")
    p = aliases.add_parser(
        "set",
        parents=common,
        help="create or move an alias",
        description="Point ALIAS at --version; with --weight, send a share of the "
        "calls to a second version (e.g. --version 1 --weight 2=0.1 sends "
        "10% of the calls to version 2 and the rest to version 1).",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument("alias", metavar="ALIAS")
    p.add_argument("version_pos", nargs="?", metavar="VERSION", help=argparse.SUPPRESS)
    p.add_argument("--version", dest="version", metavar="V", help="the version the alias points to")
    p.add_argument(
        "--weight",
        dest="weight",
        metavar="VERSION=FRACTION",
        help="send this fraction (0 to 1) of the calls to a second version",
    )
    p.add_argument("--routing", dest="weight", help=argparse.SUPPRESS)  # the earlier spelling
    p.add_argument("--description", metavar="TEXT")
    p.set_defaults(func=alias_set)
    p = aliases.add_parser("list", aliases=["ls"], parents=common, help="list a function's aliases")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=alias_list)
    for verb, func, aka in (("get", alias_get, []), ("rm", alias_delete, ["delete"])):
        p = aliases.add_parser(
            verb,
            aliases=aka,
            parents=common,
            help=f"{'show' if verb == 'get' else 'delete'} an alias",
        )
        p.add_argument("name", metavar="NAME")
        p.add_argument("alias", metavar="ALIAS")
        p.set_defaults(func=func)

    keys = group("keys", "create, list and revoke API keys (admin)")
    p = keys.add_parser("create", parents=common, help="mint an API key; it is shown once")
    p.add_argument(
        "--namespace", metavar="NS", help="the namespace (tenant) of the key (default: your own)"
    )
    p.add_argument("--description", metavar="TEXT")
    p.add_argument(
        "--admin", action="store_true", help="an admin key, which may mint and revoke keys"
    )
    p.set_defaults(func=keys_create)
    p = keys.add_parser(
        "list", aliases=["ls"], parents=common, help="list the keys (never the keys themselves)"
    )
    p.set_defaults(func=keys_list)
    p = keys.add_parser("revoke", aliases=["rm"], parents=common, help="revoke a key by its id")
    p.add_argument("key_id", metavar="KEY_ID")
    p.set_defaults(func=keys_revoke)

    logs.add_parser(sub, common)

    triggers = group("trigger", "run functions on a timer or a NATS subject")
    p = triggers.add_parser("add", parents=common, help="add a trigger")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--type", required=True, choices=("timer", "subject", "http"))
    p.add_argument("--schedule", metavar="EXPR")
    p.add_argument("--subject", metavar="SUBJECT")
    p.add_argument("-q", "--qualifier", metavar="Q")
    p.add_argument(
        "--payload-format",
        choices=("1.0", "2.0"),
        help="http triggers: the event's shape, API Gateway REST (1.0, the default) or "
        "HTTP API / function URL (2.0)",
    )
    p.set_defaults(func=trigger_add)
    p = triggers.add_parser(
        "list", aliases=["ls"], parents=common, help="list a function's triggers"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=trigger_list)
    p = triggers.add_parser("rm", aliases=["delete"], parents=common, help="remove a trigger")
    p.add_argument("name", metavar="NAME")
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=trigger_delete)

    invocations = group("invocation", "inspect async invocations")
    p = invocations.add_parser(
        "get", parents=common, help="status and result of an async invocation"
    )
    p.add_argument("id", metavar="ID")
    p.set_defaults(func=invocation_get)
