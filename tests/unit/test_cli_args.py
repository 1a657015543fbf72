"""The CLI without a network: argument parsing, --data/--env inputs, error and output formatting."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from nimbus.cli import commands, logs, manage, metering, output
from nimbus.cli.inputs import UsageError, load_code, parse_env_pairs, read_event
from nimbus.cli.main import build_parser, main
from nimbus.client import InvokeResult, NimbusApiError, NimbusConnectionError
from nimbus.client.client import invoke_result
from nimbus.client.errors import error_from_response

# -- argument parsing ---------------------------------------------------------------------------


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


def test_deploy_arguments() -> None:
    a = parse(
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        "src",
        "--memory",
        "256",
        "--timeout",
        "10",
        "--env",
        "A=1",
        "B=x=y",
        "--env",
        "C=",
        "--description",
        "hi",
    )
    assert a.func is commands.deploy
    assert (a.name, a.runtime, a.handler, a.src) == ("hello", "python3.11", "main.handler", "src")
    assert (a.memory, a.timeout, a.description) == (256, 10, "hi")
    assert a.env == ["A=1", "B=x=y", "C="]
    assert a.json is False and a.endpoint is None
    assert (
        a.upload == "auto"
        and parse("deploy", "x", "--src", "d.zip", "--upload", "grpc").upload == "grpc"
    )


def test_alias_and_keys_arguments() -> None:
    a = parse(
        "alias",
        "set",
        "f",
        "live",
        "--version",
        "1",
        "--weight",
        "2=0.1",
        "--description",
        "canary",
    )
    assert (a.name, a.alias, a.version, a.version_pos, a.weight, a.description) == (
        "f",
        "live",
        "1",
        None,
        "2=0.1",
        "canary",
    )
    # `--version` after a command is the alias's version, not the program's
    assert parse("--json", "alias", "set", "f", "live", "--version", "2").version == "2"
    k = parse("keys", "create", "--namespace", "team-a", "--description", "ci", "--admin")
    assert (k.namespace, k.description, k.admin) == ("team-a", "ci", True)
    assert parse("keys", "create").admin is False


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "--endpoint", "http://e:1", "--api-key", "k", "fn", "list"],
        ["fn", "list", "--json", "--endpoint", "http://e:1", "--api-key", "k"],
        ["fn", "--json", "list", "--endpoint", "http://e:1", "--api-key", "k"],
    ],
)
def test_global_flags_anywhere(argv: list[str]) -> None:
    a = parse(*argv)
    assert a.func is commands.fn_list
    assert (a.json, a.endpoint, a.api_key) == (True, "http://e:1", "k")


def test_invoke_arguments() -> None:
    a = parse("invoke", "hello", "--data", "@event.json", "--qualifier", "prod", "-v")
    assert a.func is manage.invoke_async_or_sync
    assert (a.name, a.data, a.qualifier, a.verbose, a.is_async) == (
        "hello",
        "@event.json",
        "prod",
        True,
        False,
    )


@pytest.mark.parametrize(
    ("argv", "func"),
    [
        (["fn", "get", "x"], commands.fn_get),
        (["fn", "delete", "x"], commands.fn_delete),
        (["fn", "rm", "x"], commands.fn_delete),
        (["fn", "ls"], commands.fn_list),
        (["version", "publish", "x"], manage.version_publish),
        (["version", "list", "x"], manage.version_list),
        (["version", "get", "x", "3"], manage.version_get),
        (["version", "delete", "x", "3"], manage.version_delete),
        (["alias", "set", "x", "prod", "3"], manage.alias_set),
        (["alias", "set", "x", "prod", "--version", "3", "--weight", "4=0.1"], manage.alias_set),
        (["alias", "get", "x", "prod"], manage.alias_get),
        (["alias", "list", "x"], manage.alias_list),
        (["alias", "rm", "x", "prod"], manage.alias_delete),
        (["keys", "create", "--namespace", "t", "--admin"], manage.keys_create),
        (["keys", "list"], manage.keys_list),
        (["keys", "revoke", "k1"], manage.keys_revoke),
        (["logs", "x", "-f"], logs.logs),
        (["usage"], metering.usage),
        (["usage", "--from", "2024-01-01", "--to", "2024-01-31"], metering.usage),
        (["metrics", "x", "--minutes", "5"], metering.metrics),
        (
            ["trigger", "add", "x", "--type", "timer", "--schedule", "rate(1 minute)"],
            manage.trigger_add,
        ),
        (["trigger", "rm", "x", "t1"], manage.trigger_delete),
    ],
)
def test_subcommands(argv: list[str], func: object) -> None:
    assert parse(*argv).func is func


@pytest.mark.parametrize(
    "argv",
    [
        ["deploy", "hello"],  # --src missing
        ["deploy", "hello", "--src", "d", "--memory", "0"],
        ["deploy", "hello", "--src", "d", "--timeout", "ten"],
        ["invoke"],
        ["fn", "get"],
        ["nosuch"],
        ["deploy", "x", "--src", "d", "--upload", "ftp"],
        ["version", "delete", "x"],
        ["keys", "revoke"],
        ["alias", "set", "x"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv, env={}) == 2
    assert "usage:" in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2() -> None:
    err = io.StringIO()
    assert main([], env={}, stdout=io.StringIO(), stderr=err) == 2
    assert "deploy" in err.getvalue()
    err = io.StringIO()
    assert main(["fn"], env={}, stdout=io.StringIO(), stderr=err) == 2
    assert "list" in err.getvalue()


def test_help_exits_0() -> None:
    out = io.StringIO()
    assert main(["deploy", "--help"], env={}, stdout=out, stderr=io.StringIO()) == 0
    assert "--runtime" in out.getvalue()


# -- inputs -------------------------------------------------------------------------------------


def test_data_default_is_empty_object() -> None:
    assert read_event(None, None) == b"{}"


def test_data_inline() -> None:
    assert read_event('{"a": [1, 2]}', None) == b'{"a": [1, 2]}'
    assert read_event("42", None) == b"42"


def test_data_from_file(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_bytes(b'{"from": "file"}\n')
    assert read_event(f"@{path}", None) == b'{"from": "file"}\n'


def test_data_from_stdin() -> None:
    assert read_event("-", io.BytesIO(b'["x"]')) == b'["x"]'


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("{bad", "not valid JSON"),
        ("", "empty"),
        ("@", "file name is missing"),
        ("@/nonexistent/event.json", "cannot read"),
    ],
)
def test_data_errors(value: str, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        read_event(value, None)


def test_data_file_with_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("{oops")
    with pytest.raises(UsageError, match="bad.json is not valid JSON"):
        read_event(f"@{path}", None)


def test_env_pairs() -> None:
    assert parse_env_pairs(None) is None
    assert parse_env_pairs(["A=1", "B=x=y", "C=", "A=2"]) == {"A": "2", "B": "x=y", "C": ""}
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_env_pairs(["hello"])
    with pytest.raises(UsageError):
        parse_env_pairs(["=v"])


def test_load_code(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text("x = 1")
    assert load_code(str(tmp_path / "src"))[:2] == b"PK"
    (tmp_path / "code.zip").write_bytes(b"PK-ready")
    assert load_code(str(tmp_path / "code.zip")) == b"PK-ready"
    with pytest.raises(UsageError, match="no such directory"):
        load_code(str(tmp_path / "missing"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UsageError, match="directory or a .zip"):
        load_code(str(tmp_path / "file.txt"))


def test_bad_data_exits_2_before_any_request() -> None:
    err = io.StringIO()
    # The endpoint is unreachable: a usage error must win before any connection is tried.
    code = main(
        ["--endpoint", "http://127.0.0.1:1", "invoke", "f", "--data", "{bad"],
        env={},
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code == 2
    assert err.getvalue().startswith("nimbus: error: the event from --data is not valid JSON")


# -- error formatting ---------------------------------------------------------------------------


def test_error_from_gateway_json() -> None:
    body = json.dumps({"code": 5, "message": "function hello not found", "details": []}).encode()
    err = error_from_response(404, "Not Found", {"x-nimbus-request-id": "r1"}, body)
    assert (err.status, err.code, err.message, err.request_id) == (
        404,
        5,
        "function hello not found",
        "r1",
    )
    assert err.code_name == "NOT_FOUND"
    assert str(err) == "function hello not found (HTTP 404)"
    assert output.api_error_text(err) == "function hello not found (HTTP 404)"


@pytest.mark.parametrize(
    ("status", "headers", "body", "code", "message"),
    [
        (503, {}, b"no healthy upstream", 14, "no healthy upstream"),
        (429, {"grpc-status": "8", "grpc-message": "queue%20full"}, b"", 8, "queue full"),
        (413, {}, b"", 11, "Payload Too Large"),
        (401, {}, b"<html>\n<b>nope</b>\n</html>", 16, "<html> <b>nope</b> </html>"),
        (409, {}, b'{"code": "6", "message": "exists"}', 6, "exists"),
    ],
)
def test_error_fallbacks(status: int, headers: dict, body: bytes, code: int, message: str) -> None:
    err = error_from_response(status, "Payload Too Large" if status == 413 else "", headers, body)
    assert (err.status, err.code, err.message) == (status, code, message)


def test_connection_error_text_suggests_make_up() -> None:
    err = NimbusConnectionError("http://127.0.0.1:8080", "connection refused", refused=True)
    text = output.connection_error_text(err)
    assert "http://127.0.0.1:8080" in text and "make up" in text


def test_function_error_text() -> None:
    body = json.dumps(
        {
            "errorType": "ZeroDivisionError",
            "errorMessage": "division by zero",
            "stackTrace": ['  File "/var/task/main.py", line 2, in handler\n    return 1 / 0\n'],
        }
    ).encode()
    result = invoke_result(200, {"x-nimbus-function-error": "Unhandled"}, body)
    text = output.function_error_text(result)
    lines = text.splitlines()
    assert lines[0] == "ZeroDivisionError: division by zero"
    assert 'File "/var/task/main.py", line 2, in handler' in lines[1]
    assert "return 1 / 0" in lines[2]


def test_function_error_text_with_string_trace_and_raw_body() -> None:
    result = invoke_result(
        200,
        {"x-nimbus-function-error": "Unhandled"},
        b'{"errorType":"E","errorMessage":"m","stackTrace":"a\\nb"}',
    )
    assert output.function_error_text(result) == "E: m\n  a\n  b"
    result = invoke_result(200, {"x-nimbus-function-error": "Timeout"}, b"Task timed out")
    assert output.function_error_text(result) == "Timeout: Task timed out"


def test_invoke_result_headers() -> None:
    r = invoke_result(
        200,
        {
            "x-nimbus-request-id": "abc",
            "x-nimbus-cold-start": "true",
            "x-nimbus-billed-ms": "12",
            "x-nimbus-executed-version": "3",
        },
        b'{"ok": true}',
    )
    assert isinstance(r, InvokeResult)
    assert (
        r.payload,
        r.request_id,
        r.cold_start,
        r.billed_ms,
        r.executed_version,
        r.function_error,
    ) == ({"ok": True}, "abc", True, 12, "3", None)
    assert "cold start: yes" in output.invoke_meta_text(
        r
    ) and "billed: 12 ms" in output.invoke_meta_text(r)
    r = invoke_result(200, {"x-nimbus-cold-start": "false"}, b"not json")
    assert (r.payload, r.raw, r.cold_start, r.billed_ms) == (None, b"not json", False, None)


# -- human output -------------------------------------------------------------------------------


FN = {
    "name": "hello",
    "runtime": "python3.11",
    "handler": "main.handler",
    "memory_mb": 128,
    "timeout_s": 3,
    "code_sha256": "ab" * 32,
    "code_size": "2048",
    "revision": "7",
    "env": {"B": "2", "A": "1"},
}


def test_function_summary_reads_proto_json() -> None:
    rows = dict(output.function_summary(FN, detailed=True))
    assert rows["memory"] == "128 MB" and rows["timeout"] == "3 s"
    assert rows["code size"] == "2.0 KiB"  # int64 arrives as a string
    assert rows["env"] == "A=1, B=2"
    assert rows["description"] == "-"  # zero values are left out of proto3 JSON


def test_function_table() -> None:
    text = output.function_table([FN, {"name": "a"}])
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "UPDATED"]
    assert lines[1].startswith("a ") and lines[2].startswith("hello")
    assert "\x1b[" not in text


def test_colour_only_on_a_tty() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    con = output.Console(Tty(), Tty(), {})
    assert con.out_color and "\x1b[" in con.ok("x")
    assert not output.Console(Tty(), Tty(), {"NO_COLOR": "1"}).out_color
    plain = output.Console(io.StringIO(), io.StringIO(), {})
    assert not plain.out_color and plain.ok("x") == "x"
    plain.progress("zipping")  # not a terminal: nothing is written
    assert plain.stderr.getvalue() == ""


def test_format_size() -> None:
    assert output.format_size(None) == "-"
    assert output.format_size(512) == "512 B"
    assert output.format_size(1536) == "1.5 KiB"
    assert output.format_size(5 * 1024 * 1024) == "5.0 MiB"


def test_api_error_exit_path_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """main() maps NimbusApiError to exit 1 with the server's message (via a stub command)."""

    def boom(ctx: commands.Context, args: object) -> int:
        raise NimbusApiError(404, 5, "function nope not found")

    monkeypatch.setattr(commands, "fn_get", boom)
    err = io.StringIO()
    assert main(["fn", "get", "nope"], env={}, stdout=io.StringIO(), stderr=err) == 1
    assert err.getvalue() == "nimbus: error: function nope not found (HTTP 404)\n"


def test_bad_endpoint_is_a_usage_error() -> None:
    err = io.StringIO()
    assert (
        main(["--endpoint", "ftp://x", "fn", "list"], env={}, stdout=io.StringIO(), stderr=err) == 2
    )
    assert "ftp://x" in err.getvalue() and "from argument" in err.getvalue()


def test_deploy_instance_concurrency_is_sent_and_shown() -> None:
    a = parse("deploy", "hello", "--src", "src", "--instance-concurrency", "10")
    assert commands._config_fields(a, None)["instance_concurrency"] == 10
    assert "instance_concurrency" not in commands._config_fields(
        parse("deploy", "hello", "--src", "src"), None
    )
    rows = dict(
        output.function_summary({"name": "hello", "instance_concurrency": 10}, detailed=True)
    )
    assert rows["instance concurrency"] == "10"
    assert (
        dict(output.function_summary({"name": "old"}, detailed=True))["instance concurrency"] == "1"
    )
