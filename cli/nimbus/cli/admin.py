"""`nimbus admin`: the service registry and API version rollouts (API v2, admin keys only).

nimbus admin endpoints [SERVICE]                    the registered replicas
nimbus admin rollout api --version v2 --weight 0.1  10 % of api's v1 calls to the v2 release
nimbus admin rollout api --clear                    back to spreading by replica count
nimbus admin rollouts                               the rollouts in force
nimbus admin status                                 the nodes, their sandboxes, and the replicas
"""

from __future__ import annotations

import argparse
import urllib.parse
from typing import Any

from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError
from nimbus.cli.manage import _print, _table, format_percent

SERVICES = ("api", "invoker")


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction from 0 to 1, got {text!r}")
    return value


def endpoints(ctx: Context, args: argparse.Namespace) -> int:
    query = f"?service={urllib.parse.quote(args.service)}" if args.service else ""
    data = ctx.client().request("GET", f"/v2/admin/endpoints{query}")
    rows = [
        (
            e.get("service"),
            e.get("replica"),
            e.get("address"),
            ",".join(e.get("api_versions") or []),
            e.get("state"),
            e.get("started_at"),
        )
        for e in data.get("endpoints") or []
    ]
    header = ("SERVICE", "REPLICA", "ADDRESS", "API", "STATE", "STARTED")
    return _print(
        ctx, data, lambda: _table(ctx, header, rows) if rows else "no replica is registered"
    )


def rollout(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.client()
    path = f"/v2/admin/rollouts/{args.service}"
    if args.clear:
        if args.version or args.weight is not None:
            raise UsageError("--clear takes no --version or --weight")
        data: Any = client.request("DELETE", path)
        return _print(
            ctx, data, lambda: f"{args.service}: calls spread over its releases by replica count"
        )
    if not args.version or args.weight is None:
        raise UsageError("rollout needs --version RELEASE and --weight FRACTION (or --clear)")
    data = client.request("PUT", path, {"version": args.version, "weight": args.weight})
    return _print(
        ctx,
        data,
        lambda: (
            f"{args.service}: {format_percent(float(data.get('weight') or 0.0))} of the "
            f"calls its releases share go to release {data.get('version')}"
        ),
    )


def rollouts(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", "/v2/admin/rollouts")
    rows = [
        (
            r.get("service"),
            r.get("version"),
            format_percent(float(r.get("weight") or 0.0)),
            r.get("updated_at"),
        )
        for r in data.get("rollouts") or []
    ]
    header = ("SERVICE", "RELEASE", "WEIGHT", "UPDATED")
    return _print(
        ctx,
        data,
        lambda: _table(ctx, header, rows) if rows else "no rollout: calls spread by replica count",
    )


UNSAFE = (
    "node {node}: functions run WITHOUT a sandbox (NIMBUS_SANDBOX=process, "
    "NIMBUS_ALLOW_UNSAFE_SANDBOX=1): tenants' code can read the host and the cluster's keys; "
    "use runc outside development"
)


def status(ctx: Context, args: argparse.Namespace) -> int:
    """The nodes (with a warning for each one running functions unisolated) and the replicas."""
    client = ctx.client()
    nodes = client.request("GET", "/v2/admin/nodes").get("nodes") or []
    replicas = client.request("GET", "/v2/admin/endpoints").get("endpoints") or []
    if ctx.json:
        ctx.console.print_json({"nodes": nodes, "endpoints": replicas})
        return 0
    for node in nodes:
        if not node.get("isolated"):
            ctx.console.warn(UNSAFE.format(node=node.get("node_id")))
    node_rows = [
        (
            n.get("node_id"),
            n.get("address"),
            n.get("sandbox") or "unknown",
            f"{n.get('memory_mb')} MB",
            n.get("cpus"),
            ",".join(f"{k}={v}" for k, v in sorted((n.get("warm") or {}).items())),
            n.get("started_at"),
        )
        for n in nodes
    ]
    header = ("NODE", "ADDRESS", "SANDBOX", "MEMORY", "CPUS", "WARM", "STARTED")
    ctx.console.print(_table(ctx, header, node_rows) if node_rows else "no node is alive")
    counts: dict[str, int] = {}
    for e in replicas:
        counts[str(e.get("service"))] = counts.get(str(e.get("service")), 0) + 1
    summary = ", ".join(f"{service} {n}" for service, n in sorted(counts.items()))
    ctx.console.print(f"replicas: {summary or 'none registered'}")
    return 0


def add_parsers(sub: Any, common: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "admin", parents=common, help="the service registry and API version rollouts (admin)"
    )
    p.set_defaults(func=None, subparser=p)
    admin = p.add_subparsers(dest="admin_command", metavar="COMMAND")
    p = admin.add_parser("endpoints", parents=common, help="list the registered service replicas")
    p.add_argument("service", nargs="?", metavar="SERVICE")
    p.set_defaults(func=endpoints)
    p = admin.add_parser(
        "rollout",
        parents=common,
        help="shift a service's traffic between API releases",
        description="Send --weight (0 to 1) of the calls that several releases of SERVICE can "
        "serve to the replicas of release --version; the rest go to the other "
        "releases by replica count. Envoy applies it within a second.",
    )
    p.add_argument("service", choices=SERVICES, metavar="SERVICE", help="api or invoker")
    p.add_argument("--version", metavar="RELEASE", help="the release that gets the weight, e.g. v2")
    p.add_argument("--weight", type=_weight, metavar="FRACTION", help="e.g. 0.1 for 10 %%")
    p.add_argument("--clear", action="store_true", help="remove the rollout")
    p.set_defaults(func=rollout)
    p = admin.add_parser("rollouts", parents=common, help="show the rollouts in force")
    p.set_defaults(func=rollouts)
    p = admin.add_parser(
        "status", parents=common, help="the nodes, their sandboxes and the service replicas"
    )
    p.set_defaults(func=status)
