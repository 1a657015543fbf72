"""`nimbus`, the command line: argparse wiring and the mapping of errors to exit codes.

Exit codes: 0 success; 1 a server, connection or function error (the message on stderr as
`nimbus: error: <message> (HTTP <status>)`); 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import BinaryIO, TextIO

from nimbus.cli import admin, commands, events, manage, metering, output
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError
from nimbus.cli.output import Console
from nimbus.client import (
    Client,
    ConfigError,
    NimbusApiError,
    NimbusClientError,
    NimbusConnectionError,
    resolve_config,
)

VERSION = "0.1.0"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _global_options(*, suppress: bool) -> argparse.ArgumentParser:
    """The flags every command takes, before or after the command name.

    The copy attached to each subcommand uses SUPPRESS defaults, so a flag given before the
    command is not reset by the subcommand's parser.
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("global options")

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    group.add_argument(
        "--endpoint",
        metavar="URL",
        default=default(None),
        help="gateway URL (default: $NIMBUS_ENDPOINT, else the endpoint in "
        ".nimbus/credentials.json, else http://127.0.0.1:$NIMBUS_GATEWAY_PORT, port 8080 "
        "when unset)",
    )
    group.add_argument(
        "--api-key",
        metavar="KEY",
        default=default(None),
        help="API key (default: $NIMBUS_API_KEY, .nimbus/credentials.json)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the JSON the server returned on stdout",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="show request details (request id, cold start, billed ms) on stderr",
    )
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=output.PROG,
        description="Deploy and run functions on a Nimbus cluster.",
        parents=[_global_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    common = [_global_options(suppress=True)]
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "deploy",
        parents=common,
        help="create or update a function from a directory or zip",
        description="Create the function, or update its configuration and code when "
        "it exists. Only the options given are changed on an update; the "
        "code is uploaded only when its sha256 changed. Packages over 1 MiB "
        "are streamed over gRPC in chunks, with a progress bar on a terminal.",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--src",
        required=True,
        metavar="DIR|ZIP",
        help="directory to zip and upload (or a ready .zip file)",
    )
    p.add_argument("--runtime", help="e.g. python3.11, nodejs20, provided (needed to create)")
    p.add_argument("--handler", help="e.g. main.handler (needed to create)")
    p.add_argument("--memory", type=_positive_int, metavar="MB", help="memory limit in MB")
    p.add_argument("--timeout", type=_positive_int, metavar="S", help="time limit in seconds")
    p.add_argument(
        "--env",
        action="extend",
        nargs="+",
        metavar="K=V",
        help="environment variables (repeatable); merged into the existing ones on update",
    )
    p.add_argument(
        "--replace-env",
        action="store_true",
        help="on update, replace the whole environment with the --env values",
    )
    p.add_argument("--description", metavar="TEXT")
    p.add_argument("--max-concurrency", type=_positive_int, metavar="N")
    p.add_argument("--min-instances", type=_non_negative_int, metavar="N")
    p.add_argument(
        "--instance-concurrency",
        type=_positive_int,
        metavar="N",
        help="calls one instance serves at the same time, 1-100 (default 1; not for provided)",
    )
    p.add_argument(
        "--force", action="store_true", help="upload the code even when its sha256 is unchanged"
    )
    p.add_argument(
        "--upload",
        choices=("auto", "json", "grpc"),
        default="auto",
        help="how to send the code: auto (default) streams packages over 1 MiB over gRPC and "
        "sends smaller ones in the JSON body; json or grpc force one way",
    )
    p.set_defaults(func=commands.deploy)

    p = sub.add_parser("invoke", parents=common, help="run a function and print its result")
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "-d",
        "--data",
        metavar="JSON|@FILE|-",
        help="the event: JSON text, @file to read it from a file, - for stdin (default {})",
    )
    p.add_argument("-q", "--qualifier", metavar="Q", help="a version, an alias or $LATEST")
    p.add_argument(
        "--async",
        dest="is_async",
        action="store_true",
        help="queue the event and print the invocation id instead of waiting",
    )
    p.set_defaults(func=manage.invoke_async_or_sync)

    fn = sub.add_parser("fn", parents=common, help="list, show and delete functions")
    fn_sub = fn.add_subparsers(dest="fn_command", metavar="COMMAND")
    p = fn_sub.add_parser("list", aliases=["ls"], parents=common, help="list the functions")
    p.set_defaults(func=commands.fn_list)
    p = fn_sub.add_parser("get", parents=common, help="show one function")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=commands.fn_get)
    p = fn_sub.add_parser("delete", aliases=["rm"], parents=common, help="delete a function")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(func=commands.fn_delete)
    fn.set_defaults(func=None, subparser=fn)

    manage.add_parsers(sub, common)
    # dlq, event-config, and `invocation get --wait` (it extends a group manage added).
    events.add_parsers(sub, common)
    admin.add_parsers(sub, common)
    metering.add_parsers(sub, common)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: BinaryIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    env = os.environ if env is None else env
    console = Console(stdout or sys.stdout, stderr or sys.stderr, env)
    parser = build_parser()
    try:
        with redirect_stdout(console.stdout), redirect_stderr(console.stderr):
            args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help / --version (0) and usage errors (2)
        return e.code if isinstance(e.code, int) else 2
    func = getattr(args, "func", None)
    if func is None:
        (getattr(args, "subparser", None) or parser).print_help(console.stderr)
        return 2

    def make_client() -> Client:
        config = resolve_config(
            env=env, cwd=cwd or Path.cwd(), endpoint=args.endpoint, api_key=args.api_key
        )
        return Client(config=config)

    if stdin is None:
        stdin = getattr(sys.stdin, "buffer", None)
    ctx = Context(
        console=console,
        make_client=make_client,
        stdin=stdin,
        json=args.json,
        verbose=args.verbose,
        env=env,
    )
    try:
        return int(func(ctx, args))
    except UsageError as e:
        console.error(str(e))
        return 2
    except ConfigError as e:
        console.error(str(e))
        return 2
    except NimbusApiError as e:
        console.error(output.api_error_text(e))
        hint = _hint(e, ctx)
        if hint:
            console.info("  " + hint)
        return 1
    except NimbusConnectionError as e:
        console.error(output.connection_error_text(e))
        return 1
    except NimbusClientError as e:
        console.error(str(e))
        return 1
    except KeyboardInterrupt:
        console.clear_progress()
        return 130
    except BrokenPipeError:
        # The reader went away (`nimbus fn list | head`); stay quiet like other Unix tools.
        if stdout is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    finally:
        ctx.close()


def key_source_text(source: str | None) -> str:
    """Where the API key came from, in the words the user would look for it."""
    if source == "argument":
        return "--api-key"
    if source == "NIMBUS_API_KEY":
        return "the environment variable NIMBUS_API_KEY"
    return source or "nowhere"


def _hint(err: NimbusApiError, ctx: Context) -> str | None:
    if err.status != 401:
        return None
    client = ctx._client
    if client is None:
        return None
    if not client.config.api_key:
        return (
            "no API key was found: pass --api-key, set NIMBUS_API_KEY, or run `make up` once "
            "to create .nimbus/credentials.json"
        )
    source = client.config.api_key_source
    where = f"the API key came from {key_source_text(source)} (sent to {client.endpoint})"
    if source == "argument":
        return f"{where}; check it"
    if source == "NIMBUS_API_KEY":
        return f"{where}, which wins over .nimbus/credentials.json; check it, or unset it"
    return f"{where}; check it, or pass another with --api-key or NIMBUS_API_KEY"


if __name__ == "__main__":
    sys.exit(main())
