"""The core commands: deploy, invoke and fn list|get|delete.

Each command takes the run's `Context` and the parsed arguments and returns the exit code; errors
from the SDK propagate to `main`, which prints them and picks the exit code.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from nimbus.cli import output
from nimbus.cli.inputs import UsageError, load_code, parse_env_pairs, read_event
from nimbus.cli.output import Console
from nimbus.client import Client, NimbusApiError

_EMPTY_ZIP_SIZE = 22  # an end-of-central-directory record and nothing else


@dataclass
class Context:
    console: Console
    make_client: Callable[[], Client]
    stdin: BinaryIO | None = None
    json: bool = False
    verbose: bool = False
    _client: Client | None = field(default=None, repr=False)

    def client(self) -> Client:
        if self._client is None:
            self._client = self.make_client()
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def _get_or_none(client: Client, name: str) -> dict[str, Any] | None:
    try:
        return client.get_function(name)
    except NimbusApiError as e:
        if e.status == 404:
            return None
        raise


def _config_fields(args: argparse.Namespace, env: dict[str, str] | None) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "runtime": args.runtime,
        "handler": args.handler,
        "memory_mb": args.memory,
        "timeout_s": args.timeout,
        "description": args.description,
        "max_concurrency": args.max_concurrency,
        "min_instances": args.min_instances,
    }
    if env is not None or args.replace_env:
        fields["env"] = env or {}
    if args.replace_env:
        fields["replace_env"] = True
    return {k: v for k, v in fields.items() if v is not None}


def deploy(ctx: Context, args: argparse.Namespace) -> int:
    console = ctx.console
    env = parse_env_pairs(args.env)
    console.progress(f"zipping {args.src} ...")
    zip_bytes = load_code(args.src)
    if len(zip_bytes) <= _EMPTY_ZIP_SIZE:
        console.warn(f"--src {args.src} has no files to deploy")
    sha256 = hashlib.sha256(zip_bytes).hexdigest()
    client = ctx.client()
    console.progress(f"looking up {args.name} on {client.endpoint} ...")
    existing = _get_or_none(client, args.name)
    action, fn, uploaded = "", None, False
    if existing is None:
        if not args.runtime or not args.handler:
            raise UsageError(
                f"function {args.name} does not exist yet; --runtime and --handler are needed to create it"
            )
        console.progress(f"uploading {output.format_size(len(zip_bytes))} ...")
        try:
            fn = client.create_function(
                args.name,
                args.runtime,
                args.handler,
                zip_bytes,
                memory_mb=args.memory,
                timeout_s=args.timeout,
                env=env,
                description=args.description,
                max_concurrency=args.max_concurrency,
                min_instances=args.min_instances,
            )
            action, uploaded = "created", True
        except NimbusApiError as e:
            if e.status != 409:
                raise
            existing = client.get_function(args.name)  # created by someone else meanwhile
    if existing is not None:
        fn, action = existing, "unchanged"
        fields = _config_fields(args, env)
        if fields:
            console.progress(f"updating the configuration of {args.name} ...")
            fn, action = client.update_function(args.name, **fields), "updated"
        if args.force or existing.get("code_sha256") != sha256:
            console.progress(f"uploading {output.format_size(len(zip_bytes))} ...")
            fn, action = client.update_code(args.name, zip_bytes), "updated"
            uploaded = True
    console.clear_progress()
    assert fn is not None
    if ctx.json:
        console.print_json(fn)
        return 0
    headline = {
        "created": f"created function {args.name}",
        "updated": f"updated function {args.name}",
        "unchanged": f"function {args.name} is up to date",
    }[action]
    note = "" if uploaded else " (same code, not uploaded)"
    console.print(console.ok(headline) + note)
    rows = output.function_summary(fn)
    if not fn.get("code_sha256"):  # an older gateway that does not report it
        rows = [r if r[0] != "code sha256" else ("code sha256", sha256) for r in rows]
    if output.as_int(fn.get("code_size")) is None:
        rows = [r if r[0] != "code size" else ("code size", output.format_size(len(zip_bytes))) for r in rows]
    console.print(output.render_rows(rows))
    return 0


def invoke(ctx: Context, args: argparse.Namespace) -> int:
    console = ctx.console
    event = read_event(args.data, ctx.stdin)
    result = ctx.client().invoke(args.name, event, qualifier=args.qualifier)
    if ctx.verbose:
        console.info(output.invoke_meta_text(result))
    if ctx.json:
        console.write_bytes(result.raw or b"null")
    elif result.function_error is None:
        if result.payload is None and result.raw.strip() and result.raw.strip() != b"null":
            console.write_bytes(result.raw)  # not JSON: show the bytes as the function sent them
        else:
            console.print_json(result.payload)
    if result.function_error is not None:
        console.info(output.style(output.function_error_text(result), "31", enabled=console.err_color))
        return 1
    return 0


def fn_list(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().request("GET", "/v1/functions")
    if ctx.json:
        ctx.console.print_json(data)
        return 0
    fns = data.get("functions") or []
    if not fns:
        ctx.console.print("no functions yet; create one with `nimbus deploy`")
        return 0
    ctx.console.print(output.function_table(fns, color=ctx.console.out_color))
    return 0


def fn_get(ctx: Context, args: argparse.Namespace) -> int:
    fn = ctx.client().get_function(args.name)
    if ctx.json:
        ctx.console.print_json(fn)
        return 0
    ctx.console.print(ctx.console.heading(f"function {fn.get('name', args.name)}"))
    rows = [r for r in output.function_summary(fn, detailed=True) if r[0] != "name"]
    ctx.console.print(output.render_rows(rows))
    return 0


def fn_delete(ctx: Context, args: argparse.Namespace) -> int:
    data = ctx.client().delete_function(args.name)
    if ctx.json:
        ctx.console.print_json(data)
        return 0
    ctx.console.print(f"deleted function {args.name}")
    return 0
