"""Issue 26, newcomer polish, on the CLI's side: every message names the limit, the source and the
fix. Against an in-memory fake of the SDK client; no network."""

from __future__ import annotations

import io
import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from nimbus.cli import logs, precheck
from nimbus.cli.commands import Context
from nimbus.cli.main import build_parser, main
from nimbus.cli.output import Console
from nimbus.client import NimbusApiError
from nimbus.client.config import resolve_config


class FakeClient:
    endpoint = "http://127.0.0.1:18080"

    def __init__(self, existing: dict[str, Any] | None = None) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.existing = existing
        self.answer: dict[str, Any] = {}
        self.pages: dict[str, Any] = {}
        self.log_answers: list[dict[str, Any]] = []

    def get_function(self, name: str) -> dict[str, Any]:
        self.calls.append(("get_function", name))
        if self.existing is None:
            raise NimbusApiError(404, 5, f"function {name!r} not found in namespace 'default'")
        return self.existing

    def create_function(self, name: str, runtime: str, handler: str, zip_bytes: bytes, **kw: Any):
        self.calls.append(("create_function", name))
        return {"name": name, "runtime": runtime, "handler": handler, **self.answer}

    def upload_function(self, name: str, *a: Any, **kw: Any) -> dict[str, Any]:
        self.calls.append(("upload_function", name))
        return {"name": name, **self.answer}

    def update_code(self, name: str, zip_bytes: bytes) -> dict[str, Any]:
        self.calls.append(("update_code", name))
        return {**(self.existing or {}), **self.answer}

    def create_trigger(self, name: str, type: str, **fields: Any) -> dict[str, Any]:  # noqa: A002
        self.calls.append(("create_trigger", name))
        return {"id": "t1", "type": type, "url": f"/fn/default/{name}"}

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append(("request", path))
        return self.pages.get(path, {})

    def get_logs(self, name: str, **kw: Any) -> dict[str, Any]:
        self.calls.append(("get_logs", kw))
        return self.log_answers.pop(0) if self.log_answers else {}

    def close(self) -> None:
        pass


def run(
    argv: list[str], client: FakeClient, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(
        console=Console(out, err, {}),
        make_client=lambda: client,  # type: ignore[arg-type,return-value]
        json=args.json,
        env=env or {},
    )
    return args.func(ctx, args), out.getvalue(), err.getvalue()


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


# -- 26.1: the size is checked before uploading ----------------------------------------------------


def test_a_package_over_the_limit_is_refused_before_any_upload(tmp_path: Path) -> None:
    big = write_zip(
        tmp_path / "big.zip", {"main.py": b"def handler(e, c): pass\n", "blob": os.urandom(3 << 20)}
    )
    client = FakeClient()
    code, _, err = run_main_like(
        ["deploy", "f", "--src", str(big), "--runtime", "python3.11", "--handler", "main.handler"],
        client,
        env={"NIMBUS_MAX_ZIP_MB": "2"},
    )
    assert code == 2
    assert "3.0 MiB, over the 2 MiB limit (NIMBUS_MAX_ZIP_MB)" in err, err
    assert client.calls == []  # nothing looked up, nothing uploaded


def test_the_default_limit_is_the_clusters_50_mib(tmp_path: Path) -> None:
    small = write_zip(tmp_path / "f.zip", {"main.py": b"def handler(e, c): pass\n"})
    client = FakeClient()
    code, _, _ = run(
        [
            "deploy",
            "f",
            "--src",
            str(small),
            "--runtime",
            "python3.11",
            "--handler",
            "main.handler",
        ],
        client,
    )
    assert code == 0 and ("create_function", "f") in client.calls


def run_main_like(argv: list[str], client: FakeClient, env: dict[str, str]) -> tuple[int, str, str]:
    """Through main(), for the exit code and the error line."""
    from nimbus.cli import main as main_module

    out, err = io.StringIO(), io.StringIO()
    original = main_module.Client
    main_module.Client = lambda config: client  # type: ignore[assignment,misc]
    try:
        code = main_module.main(argv, env={"NIMBUS_API_KEY": "k", **env}, stdout=out, stderr=err)
    finally:
        main_module.Client = original  # type: ignore[misc]
    return code, out.getvalue(), err.getvalue()


# -- 26.2: http triggers print their full URL ------------------------------------------------------


def test_trigger_add_http_prints_the_full_url() -> None:
    code, out, _ = run(["trigger", "add", "hello", "--type", "http"], FakeClient())
    assert code == 0
    assert "url: http://127.0.0.1:18080/fn/default/hello" in out, out


def test_trigger_list_has_a_url_column() -> None:
    client = FakeClient()
    client.pages["/v1/functions/hello/triggers"] = {
        "triggers": [
            {"id": "t1", "type": "http", "url": "/fn/default/hello", "created_at": "c"},
            {"id": "t2", "type": "timer", "schedule": "rate(1 minute)", "created_at": "c"},
        ]
    }
    code, out, _ = run(["trigger", "list", "hello"], client)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[-1] == "URL"
    assert lines[1].split()[-1] == "http://127.0.0.1:18080/fn/default/hello"
    assert lines[2].split()[-1] == "-"


def test_trigger_list_shows_an_http_trigger_s_payload_format() -> None:
    client = FakeClient()
    client.pages["/v1/functions/hello/triggers"] = {
        "triggers": [
            {"id": "http", "type": "http", "url": "/fn/default/hello", "payload_format": "2.0"},
            {"id": "t2", "type": "timer", "schedule": "rate(1 minute)", "payload_format": ""},
        ]
    }
    code, out, _ = run(["trigger", "list", "hello"], client)
    lines = out.splitlines()
    assert code == 0 and "SCHEDULE/SUBJECT/FORMAT" in lines[0]
    assert lines[1].split()[2:4] == ["payload", "2.0"]
    assert lines[2].split()[2:4] == ["rate(1", "minute)"]


# -- 26.4: a Node.js syntax error names the file, line and column at deploy ------------------------


NODE_OUTPUT = """/tmp/nimbus-check-x/index.js:3
}}
 ^

SyntaxError: Unexpected token '}'
    at wrapSafe (node:internal/modules/cjs/loader:1464:18)
"""


def test_node_check_output_is_described_with_line_and_column() -> None:
    text = precheck.describe_node_check(NODE_OUTPUT, "index.js")
    assert text is not None
    assert text.splitlines()[0] == "index.js:3:2: SyntaxError: Unexpected token '}'"


def test_node_handler_entry() -> None:
    names = ["lib/app.mjs", "index.js"]
    assert precheck.node_handler_entry("lib/app.handler", names) == "lib/app.mjs"
    assert precheck.node_handler_entry("index.handler", names) == "index.js"
    assert precheck.node_handler_entry("missing.handler", names) is None


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node on PATH")
def test_deploy_warns_of_a_node_syntax_error_with_its_location(tmp_path: Path) -> None:
    src = tmp_path / "fn"
    src.mkdir()
    (src / "index.js").write_text("exports.handler = async () => {\n  return 1;\n}}\n")
    code, _, err = run(
        ["deploy", "f", "--src", str(src), "--runtime", "nodejs20", "--handler", "index.handler"],
        FakeClient(),
    )
    assert code == 0
    assert "index.js:3:2: SyntaxError: Unexpected token '}'" in err, err


# -- 26.5: logs --tail and the newest lines by default ---------------------------------------------


def line(ts: str, msg: str) -> dict[str, str]:
    return {"timestamp": ts, "request_id": "", "stream": "stdout", "message": msg}


def test_newest_lines_pages_through_the_window_and_skips_the_edge_once() -> None:
    pages = {
        "": {"lines": [line("t1", "a"), line("t2", "b"), line("t2", "c")], "truncated": True},
        "t2": {"lines": [line("t2", "b"), line("t2", "c"), line("t3", "d")], "truncated": False},
    }
    asked: list[str] = []

    def get_page(since: str) -> dict[str, Any]:
        asked.append(since)
        return pages[since]

    lines, total, capped = logs.newest_lines(get_page, "", 2)
    assert [x["message"] for x in lines] == ["c", "d"]
    assert (total, capped, asked) == (4, False, ["", "t2"])


def test_logs_without_flags_show_the_newest_lines() -> None:
    client = FakeClient()
    client.log_answers = [
        {"lines": [line(f"t{i:05d}", str(i)) for i in range(10000)], "truncated": True},
        {"lines": [line("t09999", "9999"), line("t10000", "10000")]},
    ]
    code, out, err = run(["logs", "hello"], client)
    printed = out.splitlines()
    assert code == 0 and len(printed) == logs.DEFAULT_TAIL
    assert printed[-1].endswith("10000") and printed[0].endswith(" 9001")
    assert "the newest 1000 of 10001 lines" in err


def test_logs_tail_n() -> None:
    client = FakeClient()
    client.log_answers = [{"lines": [line(f"t{i}", str(i)) for i in range(5)]}]
    code, out, _ = run(["logs", "hello", "--tail", "2"], client)
    assert code == 0 and [x.split()[-1] for x in out.splitlines()] == ["3", "4"]
    assert client.calls[0] == (
        "get_logs",
        {"request_id": None, "since": None, "limit": logs.MAX_LIMIT},
    )


def test_logs_limit_still_means_the_oldest_n() -> None:
    client = FakeClient()
    client.log_answers = [{"lines": [line("t0", "0"), line("t1", "1")], "truncated": True}]
    code, out, _ = run(["logs", "hello", "--limit", "2"], client)
    assert code == 0 and [x.split()[-1] for x in out.splitlines()] == ["0", "1"]


def test_tail_and_limit_do_not_go_together() -> None:
    err = io.StringIO()
    assert main(["logs", "f", "--tail", "1", "--limit", "1"], env={}, stderr=err) == 2
    assert "--tail" in err.getvalue()


# -- 26.6: a 401 says where the key came from ------------------------------------------------------


class RejectingClient(FakeClient):
    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config
        self.endpoint = config.endpoint

    def request(self, method: str, path: str, body: Any = None) -> Any:
        raise NimbusApiError(401, 16, "invalid API key")


@pytest.mark.parametrize(
    ("argv", "env", "source"),
    [
        (["--api-key", "k1"], {}, "the API key came from --api-key"),
        (
            [],
            {"NIMBUS_API_KEY": "k2"},
            "the API key came from the environment variable NIMBUS_API_KEY",
        ),
        ([], {}, "credentials.json"),
    ],
)
def test_a_401_names_the_source_of_the_key(
    argv: list[str],
    env: dict[str, str],
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nimbus.cli import main as main_module

    home = tmp_path / ".nimbus"
    home.mkdir()
    (home / "credentials.json").write_text(
        '{"endpoint": "http://127.0.0.1:18080", "api_key": "k3"}'
    )
    monkeypatch.setattr(main_module, "Client", RejectingClient)
    err = io.StringIO()
    code = main_module.main(
        [*argv, "fn", "list"], env=env, cwd=tmp_path, stdout=io.StringIO(), stderr=err
    )
    text = err.getvalue()
    assert code == 1 and "invalid API key (HTTP 401)" in text
    assert source in text, text
    if not argv and not env:
        assert str(home / "credentials.json") in text


def test_config_records_the_key_source(tmp_path: Path) -> None:
    config = resolve_config(env={"NIMBUS_API_KEY": "k"}, cwd=tmp_path)
    assert config.api_key_source == "NIMBUS_API_KEY"


# -- 26.9: funcmgr's warnings are printed ----------------------------------------------------------


def test_deploy_prints_the_servers_warnings(tmp_path: Path) -> None:
    src = tmp_path / "fn"
    src.mkdir()
    (src / "main.py").write_text("def handler(e, c): pass\n")
    client = FakeClient()
    client.answer = {"warnings": ["handler: main.py has no top-level def ... of 'handle'"]}
    code, _, err = run(
        ["deploy", "f", "--src", str(src), "--runtime", "python3.11", "--handler", "main.handle"],
        client,
    )
    assert code == 0
    assert "warning: handler: main.py has no top-level def ... of 'handle'" in err, err


# -- 26.10: --endpoint's help names NIMBUS_GATEWAY_PORT --------------------------------------------


def test_endpoint_help_names_the_gateway_port_variable() -> None:
    text = re.sub(r"\s+", " ", build_parser().format_help())
    assert "http://127.0.0.1:$NIMBUS_GATEWAY_PORT" in text
