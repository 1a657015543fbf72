"""The core commands: deploy, invoke and fn list|get|delete.

Each command takes the run's `Context` and the parsed arguments and returns the exit code; errors
from the SDK propagate to `main`, which prints them and picks the exit code.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from nimbus.cli import output, precheck
from nimbus.cli.inputs import UsageError, load_code, parse_env_pairs, read_event
from nimbus.cli.output import Console
from nimbus.client import Client, NimbusApiError, StreamingUnavailable, upload
from nimbus.client.errors import GrpcCode

_EMPTY_ZIP_SIZE = 22  # an end-of-central-directory record and nothing else
# The services' default NIMBUS_MAX_ZIP_MB (funcmgr, api and the gateway take theirs from it).
DEFAULT_MAX_ZIP_MB = 50
_MIB = 1024 * 1024


def max_zip_mb(env: Mapping[str, str]) -> int:
    raw = env.get("NIMBUS_MAX_ZIP_MB", "").strip()
    if not raw:
        return DEFAULT_MAX_ZIP_MB
    if not raw.isdigit() or int(raw) < 1:
        raise UsageError(f"NIMBUS_MAX_ZIP_MB={raw!r} must be a positive whole number of MiB")
    return int(raw)


def check_size(src: str, size: int, env: Mapping[str, str]) -> None:
    """Refuses a package over the cluster's zip limit before anything is uploaded."""
    limit = max_zip_mb(env)
    if size > limit * _MIB:
        raise UsageError(
            f"--src {src}: the zipped package is {size / _MIB:.1f} MiB, over the {limit} MiB "
            "limit (NIMBUS_MAX_ZIP_MB); leave out what the function does not need at run time "
            "(tests, docs, caches, build tools), or, when the cluster was started with a larger "
            "NIMBUS_MAX_ZIP_MB, set the same value here"
        )


@dataclass
class Context:
    console: Console
    make_client: Callable[[], Client]
    stdin: BinaryIO | None = None
    json: bool = False
    verbose: bool = False
    # The environment the command runs in (NIMBUS_MAX_ZIP_MB ...); main passes os.environ.
    env: Mapping[str, str] = field(default_factory=dict)
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
        "instance_concurrency": args.instance_concurrency,
    }
    if env is not None or args.replace_env:
        fields["env"] = env or {}
    if args.replace_env:
        fields["replace_env"] = True
    return {k: v for k, v in fields.items() if v is not None}


def _use_stream(mode: str, size: int) -> bool:
    """`--upload auto` streams packages over STREAM_THRESHOLD
    (1 MiB) over gRPC; json/grpc force one way."""
    if mode == "grpc":
        return True
    if mode == "json":
        return False
    return size > upload.STREAM_THRESHOLD


class _Fallback(Exception):
    """The streaming upload cannot be used here; send the package in the JSON body instead."""


def _streamed(
    ctx: Context, args: argparse.Namespace, send: Callable[..., dict[str, Any]], size: int
) -> dict[str, Any]:
    """Runs one streaming upload with a progress display; in `--upload auto` mode, raises
    `_Fallback` when this client or the gateway cannot stream (nothing was stored then)."""
    console = ctx.console
    console.clear_progress()
    chunks = -(-size // upload.chunk_size_for(size))
    if not console.err_tty:
        console.info(
            f"uploading {output.format_size(size)} to {args.name} over gRPC in {chunks} chunks"
        )
    progress = console.upload_progress(f"uploading {args.name}")
    ok = False
    try:
        fn = send(progress=progress)
        ok = True
        return fn
    except StreamingUnavailable as e:
        if args.upload == "grpc":
            raise
        raise _Fallback(str(e)) from e
    except NimbusApiError as e:
        # UNIMPLEMENTED: a gateway without UploadCode.
        if args.upload == "grpc" or e.code != GrpcCode.UNIMPLEMENTED:
            raise
        raise _Fallback(f"the gateway does not offer the streaming upload ({e.message})") from e
    finally:
        progress.close(done=ok)


def _send_code(
    ctx: Context,
    args: argparse.Namespace,
    zip_bytes: bytes,
    streamed: Callable[..., dict[str, Any]],
    in_json: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Sends the package by the streaming upload or in the JSON body, as `--upload` decides."""
    if _use_stream(args.upload, len(zip_bytes)):
        try:
            return _streamed(ctx, args, streamed, len(zip_bytes))
        except _Fallback as e:
            ctx.console.warn(f"{e}; sending the package in the JSON body instead")
    ctx.console.progress(f"uploading {output.format_size(len(zip_bytes))} ...")
    return in_json()


def _create(
    ctx: Context, args: argparse.Namespace, zip_bytes: bytes, env: dict[str, str] | None
) -> dict[str, Any]:
    client = ctx.client()
    config: dict[str, Any] = {
        "memory_mb": args.memory,
        "timeout_s": args.timeout,
        "env": env,
        "description": args.description,
        "max_concurrency": args.max_concurrency,
        "min_instances": args.min_instances,
        "instance_concurrency": args.instance_concurrency,
    }
    return _send_code(
        ctx,
        args,
        zip_bytes,
        lambda progress: client.upload_function(
            args.name, args.runtime, args.handler, zip_bytes, progress=progress, **config
        ),
        lambda: client.create_function(args.name, args.runtime, args.handler, zip_bytes, **config),
    )


def _update_code(ctx: Context, args: argparse.Namespace, zip_bytes: bytes) -> dict[str, Any]:
    client = ctx.client()
    return _send_code(
        ctx,
        args,
        zip_bytes,
        lambda progress: client.upload_code(args.name, zip_bytes, progress=progress),
        lambda: client.update_code(args.name, zip_bytes),
    )


def deploy(ctx: Context, args: argparse.Namespace) -> int:
    """Creates the function, or updates what was given of its config and, when the sha256 differs,
    its code. Packages over 1 MiB are streamed over gRPC with a progress display (`--upload`)."""
    console = ctx.console
    env = parse_env_pairs(args.env)
    console.progress(f"zipping {args.src} ...")
    zip_bytes = load_code(args.src)
    check_size(args.src, len(zip_bytes), ctx.env)
    if len(zip_bytes) <= _EMPTY_ZIP_SIZE:
        console.warn(f"--src {args.src} has no files to deploy")
    sha256 = hashlib.sha256(zip_bytes).hexdigest()
    client = ctx.client()
    console.progress(f"looking up {args.name} on {client.endpoint} ...")
    existing = _get_or_none(client, args.name)
    runtime = args.runtime or (existing or {}).get("runtime")
    handler = args.handler or (existing or {}).get("handler")
    if runtime == "nodejs20" and handler:
        problem = precheck.check_node_syntax(zip_bytes, str(handler))
        if problem:
            console.warn(problem)
    action, fn, uploaded = "", None, False
    if existing is None:
        if not args.runtime or not args.handler:
            raise UsageError(
                f"function {args.name} does not exist yet; "
                "--runtime and --handler are needed to create it"
            )
        try:
            fn = _create(ctx, args, zip_bytes, env)
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
            fn, action = _update_code(ctx, args, zip_bytes), "updated"
            uploaded = True
    console.clear_progress()
    assert fn is not None
    if ctx.json:
        console.print_json(fn)
        for warning in fn.get("warnings") or []:
            console.warn(str(warning))
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
        rows = [
            r if r[0] != "code size" else ("code size", output.format_size(len(zip_bytes)))
            for r in rows
        ]
    console.print(output.render_rows(rows))
    for warning in fn.get("warnings") or []:
        console.warn(str(warning))
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
        console.info(
            output.style(output.function_error_text(result), "31", enabled=console.err_color)
        )
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
