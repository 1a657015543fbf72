"""The secondary commands (versions, aliases, logs, usage, triggers, async) against an in-memory fake
of the SDK client: what they send and what they print."""

from __future__ import annotations

import argparse
import io
import json
from typing import Any

import pytest

from nimbus.cli import manage
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError
from nimbus.cli.main import build_parser
from nimbus.cli.output import Console


class FakeClient:
    endpoint = "http://fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.log_pages: list[dict[str, Any]] = []

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def publish_version(self, name: str, description: str | None = None) -> dict[str, Any]:
        self._record("publish_version", name, description=description)
        return {"version": "4", "code_sha256": "abc"}

    def put_alias(self, name: str, alias: str, version: str, **kw: Any) -> dict[str, Any]:
        self._record("put_alias", name, alias, version, **kw)
        return {"name": name, "alias": alias, "version": version}

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self._record("request", method, path)
        if path.startswith("/v1/usage"):
            return {"rows": [{"day": "2024-01-01", "namespace": "default", "function": "f", "version": "$LATEST",
                              "requests": "12", "gb_seconds": 0.5}]}
        return {}

    def create_trigger(self, name: str, type: str, **fields: Any) -> dict[str, Any]:  # noqa: A002
        self._record("create_trigger", name, type, **fields)
        return {"id": "t1", "type": type}

    def get_logs(self, name: str, **kw: Any) -> dict[str, Any]:
        self._record("get_logs", name, **kw)
        return self.log_pages.pop(0) if self.log_pages else {}

    def invoke_async(self, name: str, event: bytes, qualifier: str | None = None) -> str:
        self._record("invoke_async", name, event, qualifier=qualifier)
        return "inv-1"

    def close(self) -> None:
        pass


def run(argv: list[str], client: FakeClient) -> tuple[int, str]:
    args = build_parser().parse_args(argv)
    out = io.StringIO()
    ctx = Context(console=Console(out, io.StringIO(), {}), make_client=lambda: client,  # type: ignore[arg-type,return-value]
                  json=args.json)
    return args.func(ctx, args), out.getvalue()


def test_version_publish() -> None:
    c = FakeClient()
    code, out = run(["version", "publish", "f", "--description", "first"], c)
    assert code == 0 and out == "published version 4 of f (code sha256 abc)\n"
    assert c.calls == [("publish_version", ("f",), {"description": "first"})]


def test_alias_set_with_routing() -> None:
    c = FakeClient()
    code, out = run(["alias", "set", "f", "prod", "3", "--routing", "4=0.1"], c)
    assert code == 0 and out == "alias prod of f -> version 3, 0.1 to version 4\n"
    assert c.calls[0][2]["routing_version"] == "4" and c.calls[0][2]["routing_weight"] == 0.1


@pytest.mark.parametrize("routing", ["4", "4=2", "=0.5", "4=x"])
def test_alias_bad_routing(routing: str) -> None:
    with pytest.raises(UsageError, match="VERSION=WEIGHT"):
        run(["alias", "set", "f", "prod", "3", "--routing", routing], FakeClient())


def test_usage_table_and_query() -> None:
    c = FakeClient()
    code, out = run(["usage", "--from", "2024-01-01"], c)
    assert code == 0
    assert c.calls == [("request", ("GET", "/v1/usage?from=2024-01-01"), {})]
    lines = out.splitlines()
    assert lines[0].split() == ["DAY", "NAMESPACE", "FUNCTION", "VERSION", "REQUESTS", "GB-SECONDS"]
    assert lines[1].split() == ["2024-01-01", "default", "f", "$LATEST", "12", "0.500"]


def test_trigger_add_validates() -> None:
    with pytest.raises(UsageError, match="--schedule"):
        run(["trigger", "add", "f", "--type", "timer"], FakeClient())
    c = FakeClient()
    code, out = run(["trigger", "add", "f", "--type", "timer", "--schedule", "rate(1 minute)"], c)
    assert code == 0 and out == "added timer trigger t1 to f\n"
    assert c.calls[0][2] == {"schedule": "rate(1 minute)", "subject": None, "qualifier": None}


def test_logs_follow_dedupes_and_advances_since() -> None:
    c = FakeClient()
    line1 = {"timestamp": "t1", "request_id": "abcdefghij", "stream": "stdout", "message": "hello\n"}
    line2 = {"timestamp": "t2", "request_id": "abcdefghij", "stream": "stdout", "message": "bye"}
    c.log_pages = [{"lines": [line1]}, {"lines": [line1, line2]}]
    args = build_parser().parse_args(["logs", "f", "-f"])
    out = io.StringIO()
    ctx = Context(console=Console(out, io.StringIO(), {}), make_client=lambda: c)  # type: ignore[arg-type,return-value]
    sleeps: list[float] = []

    def fake_sleep(s: float) -> None:
        sleeps.append(s)
        if len(sleeps) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        manage.logs(ctx, args, sleep=fake_sleep)
    assert out.getvalue().splitlines() == ["t1 abcdefgh hello", "t2 abcdefgh bye"]
    assert [call[2]["since"] for call in c.calls] == [None, "t1"]


def test_invoke_async_prints_id() -> None:
    c = FakeClient()
    code, out = run(["invoke", "f", "--async", "--data", '{"a": 1}'], c)
    assert code == 0 and out == "inv-1\n"
    code, out = run(["--json", "invoke", "f", "--async"], c)
    assert json.loads(out) == {"invocation_id": "inv-1"}
    assert c.calls[0] == ("invoke_async", ("f", b'{"a": 1}'), {"qualifier": None})


def test_every_command_has_a_handler() -> None:
    """Each leaf command in the parser resolves to a callable."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        leaves = nested[0].choices.values() if nested else [p]
        for leaf in leaves:
            assert callable(leaf.get_default("func")), name
