"""The secondary commands (versions, aliases, logs, triggers, async) against an in-memory fake
of the SDK client: what they send and what they print."""

from __future__ import annotations

import argparse
import io
import json
import re
from typing import Any

import pytest
from nimbus.cli import manage
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError
from nimbus.cli.main import build_parser
from nimbus.cli.output import Console
from nimbus.client import NimbusApiError


class FakeClient:
    endpoint = "http://fake"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.log_pages: list[dict[str, Any]] = []
        self.pages: dict[str, Any] = {}  # canned answers of request() by path

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def publish_version(self, name: str, description: str | None = None) -> dict[str, Any]:
        self._record("publish_version", name, description=description)
        return {"version": "4", "code_sha256": "abc"}

    def put_alias(self, name: str, alias: str, version: str, **kw: Any) -> dict[str, Any]:
        self._record("put_alias", name, alias, version, **kw)
        a: dict[str, Any] = {"name": name, "alias": alias, "version": version}
        if kw.get("routing_version"):
            a["routing"] = {"version": kw["routing_version"], "weight": kw["routing_weight"]}
        return a

    def get_alias(self, name: str, alias: str) -> dict[str, Any]:
        self._record("get_alias", name, alias)
        return {
            "name": name,
            "alias": alias,
            "version": "1",
            "routing": {"version": "2", "weight": 0.25},
            "description": "canary",
            "revision": "5",
        }

    def delete_alias(self, name: str, alias: str) -> dict[str, Any]:
        self._record("delete_alias", name, alias)
        return {}

    def get_version(self, name: str, version: str) -> dict[str, Any]:
        self._record("get_version", name, version)
        return {
            "version": version,
            "description": "first",
            "code_sha256": "ab" * 32,
            "created_at": "t0",
            "config": {
                "name": name,
                "runtime": "python3.11",
                "handler": "main.handler",
                "memory_mb": 256,
                "timeout_s": 3,
                "code_sha256": "ab" * 32,
                "code_size": "2048",
            },
        }

    def delete_version(self, name: str, version: str) -> dict[str, Any]:
        self._record("delete_version", name, version)
        return {}

    def create_key(
        self, namespace: str | None = None, description: str | None = None, admin: bool = False
    ) -> dict[str, Any]:
        self._record("create_key", namespace=namespace, description=description, admin=admin)
        key = {
            "api_key": "nmb_secret",
            "key_id": "k1",
            "namespace": namespace or "default",
            "description": description or "",
            "created_at": "t0",
        }
        if admin:
            key["admin"] = True
        return key

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        self._record("revoke_key", key_id)
        return {}

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self._record("request", method, path)
        if path in self.pages:
            return self.pages[path]
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
    code, out, _ = run_err(argv, client)
    return code, out


def run_err(argv: list[str], client: FakeClient) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(
        console=Console(out, err, {}),
        make_client=lambda: client,  # type: ignore[arg-type,return-value]
        json=args.json,
    )
    return args.func(ctx, args), out.getvalue(), err.getvalue()


def rows_of(lines: list[str]) -> dict[str, str]:
    """`label  value` rows (labels may contain single spaces) into a dict."""
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines)  # type: ignore[misc]


def run_main(
    argv: list[str], client: FakeClient, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str, str]:
    """Through main(), for exit codes; the SDK client is the fake."""
    from nimbus.cli import main as main_module

    monkeypatch.setattr(main_module, "Client", lambda config: client)
    out, err = io.StringIO(), io.StringIO()
    code = main_module.main(argv, env={"NIMBUS_API_KEY": "k"}, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# -- versions -----------------------------------------------------------------------------------


def test_version_publish() -> None:
    c = FakeClient()
    code, out = run(["version", "publish", "f", "--description", "first"], c)
    assert code == 0 and out == "published version 4 of f (code sha256 abc)\n"
    assert c.calls == [("publish_version", ("f",), {"description": "first"})]


def test_version_list_sorts_numerically() -> None:
    c = FakeClient()
    c.pages["/v1/functions/f/versions"] = {
        "versions": [
            {"version": "10", "code_sha256": "c" * 64, "created_at": "t10"},
            {"version": "2", "code_sha256": "b" * 64, "created_at": "t2", "description": "second"},
        ]
    }
    code, out = run(["version", "list", "f"], c)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["VERSION", "CODE", "CREATED", "DESCRIPTION"]
    assert lines[1].split() == ["2", "b" * 12, "t2", "second"] and lines[2].split() == [
        "10",
        "c" * 12,
        "t10",
        "-",
    ]
    c.pages["/v1/functions/f/versions"] = {"versions": []}
    assert "no versions of f yet" in run(["version", "ls", "f"], c)[1]
    code, out = run(["--json", "version", "list", "f"], c)
    assert json.loads(out) == {"versions": []}


def test_version_get_and_delete() -> None:
    c = FakeClient()
    code, out = run(["version", "get", "f", "3"], c)
    assert code == 0 and out.splitlines()[0] == "version 3 of f"
    rows = rows_of(out.splitlines()[1:])
    assert (
        rows["description"] == "first"
        and rows["code sha256"] == "ab" * 32
        and rows["created"] == "t0"
    )
    assert (rows["runtime"], rows["handler"], rows["memory"], rows["code size"]) == (
        "python3.11",
        "main.handler",
        "256 MB",
        "2.0 KiB",
    )
    code, out = run(["version", "delete", "f", "3"], c)
    assert (code, out) == (0, "deleted version 3 of f\n")
    assert c.calls[-1] == ("delete_version", ("f", "3"), {})
    assert build_parser().parse_args(["version", "rm", "f", "3"]).func is manage.version_delete


def test_version_delete_conflict_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    c = FakeClient()

    def conflict(name: str, version: str) -> dict[str, Any]:
        raise NimbusApiError(409, 9, "version 3 of f is used by alias prod")

    c.delete_version = conflict  # type: ignore[method-assign]
    code, out, err = run_main(["version", "delete", "f", "3"], c, monkeypatch)
    assert (code, out) == (1, "")
    assert err == "nimbus: error: version 3 of f is used by alias prod (HTTP 409)\n"


# -- aliases ------------------------------------------------------------------------------------


def test_alias_set_with_weight() -> None:
    c = FakeClient()
    code, out = run(
        ["alias", "set", "f", "prod", "--version", "3", "--weight", "4=0.1", "--description", "d"],
        c,
    )
    assert code == 0 and out == "alias prod of f -> version 3, 10% to version 4\n"
    assert c.calls == [
        (
            "put_alias",
            ("f", "prod", "3"),
            {"routing_version": "4", "routing_weight": 0.1, "description": "d"},
        )
    ]


def test_alias_set_plain_and_legacy_spellings() -> None:
    c = FakeClient()
    assert run(["alias", "set", "f", "prod", "--version", "3"], c) == (
        0,
        "alias prod of f -> version 3\n",
    )
    assert c.calls[-1][2] == {"routing_version": None, "routing_weight": None, "description": None}
    # the earlier positional VERSION and --routing still work
    code, out = run(["alias", "set", "f", "prod", "3", "--routing", "4=0.5"], c)
    assert code == 0 and out == "alias prod of f -> version 3, 50% to version 4\n"


def test_alias_set_json_is_the_servers() -> None:
    c = FakeClient()
    code, out = run(
        ["--json", "alias", "set", "f", "prod", "--version", "3", "--weight", "4=0.25"], c
    )
    assert json.loads(out) == {
        "name": "f",
        "alias": "prod",
        "version": "3",
        "routing": {"version": "4", "weight": 0.25},
    }


@pytest.mark.parametrize("weight", ["4", "4=2", "=0.5", "4=x", "4=-0.1", "4=nan", "4=", "4=1.0001"])
def test_alias_bad_weight(weight: str) -> None:
    with pytest.raises(UsageError, match="--weight must be VERSION=FRACTION with 0 ≤ FRACTION ≤ 1"):
        run(["alias", "set", "f", "prod", "--version", "3", "--weight", weight], FakeClient())


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("2=0", ("2", 0.0)),
        ("2=1", ("2", 1.0)),
        (" 7 = 0.3 ", ("7", 0.3)),
        ("2=1e-1", ("2", 0.1)),
        (None, (None, None)),
    ],
)
def test_parse_weight(text: str | None, parsed: tuple[str | None, float | None]) -> None:
    assert manage.parse_weight(text) == parsed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["alias", "set", "f", "prod", "--version", "3", "--weight", "4=2"],
            "--weight must be VERSION=FRACTION",
        ),
        (["alias", "set", "f", "prod"], "needs --version"),
        (["alias", "set", "f", "prod", "--version", "3", "--weight", "3=0.5"], "already points to"),
        (["alias", "set", "f", "prod", "2", "--version", "3"], "two versions given"),
    ],
)
def test_alias_usage_errors_exit_2_before_any_request(
    argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = FakeClient()
    code, out, err = run_main(argv, c, monkeypatch)
    assert (code, out, c.calls) == (2, "", [])
    assert err.startswith("nimbus: error: ") and message in err


def test_alias_get_list_rm() -> None:
    c = FakeClient()
    code, out = run(["alias", "get", "f", "prod"], c)
    rows = rows_of(out.splitlines())
    assert code == 0 and rows == {
        "alias": "prod",
        "function": "f",
        "version": "1",
        "routing": "25% to version 2",
        "description": "canary",
    }
    c.pages["/v1/functions/f/aliases"] = {
        "aliases": [
            {"alias": "prod", "version": "1", "routing": {"version": "2", "weight": 0.1}},
            {"alias": "beta", "version": "2", "routing": None, "description": "try me"},
        ]
    }
    code, out = run(["alias", "list", "f"], c)
    lines = out.splitlines()
    assert lines[0].split() == ["ALIAS", "VERSION", "ROUTING", "DESCRIPTION"]
    assert lines[1].split() == ["beta", "2", "-", "try", "me"]
    assert lines[2].split() == ["prod", "1", "10%", "to", "version", "2", "-"]
    c.pages["/v1/functions/f/aliases"] = {"aliases": []}
    assert run(["alias", "ls", "f"], c)[1] == "no aliases on f\n"
    assert run(["alias", "rm", "f", "prod"], c) == (0, "deleted alias prod of f\n")
    assert run(["alias", "delete", "f", "prod"], c) == (0, "deleted alias prod of f\n")


def test_routing_text() -> None:
    assert manage.routing_text({}) is None
    assert manage.routing_text({"routing": {"version": "", "weight": 0}}) is None
    assert (
        manage.routing_text({"routing": {"version": "2"}}) == "0% to version 2"
    )  # zero weight left out
    assert (
        manage.routing_text({"routing": {"version": "2", "weight": 0.333}}) == "33.3% to version 2"
    )


# -- keys ---------------------------------------------------------------------------------------


def test_keys_create_shows_the_key_once() -> None:
    c = FakeClient()
    code, out, err = run_err(["keys", "create", "--namespace", "team-a", "--description", "ci"], c)
    assert code == 0
    assert c.calls == [
        ("create_key", (), {"namespace": "team-a", "description": "ci", "admin": False})
    ]
    lines = out.splitlines()
    assert lines[0] == "created key k1 in namespace team-a"
    assert rows_of(lines[1:]) == {
        "api key": "nmb_secret",
        "key id": "k1",
        "namespace": "team-a",
        "admin": "no",
        "description": "ci",
    }
    assert err == f"nimbus: note: {manage.KEY_SHOWN_ONCE}\n" and "cannot be shown again" in err


def test_keys_create_admin_json() -> None:
    c = FakeClient()
    code, out, err = run_err(["keys", "create", "--admin", "--json"], c)
    assert (
        code == 0
        and json.loads(out)["api_key"] == "nmb_secret"
        and json.loads(out)["admin"] is True
    )
    assert c.calls[0][2] == {"namespace": None, "description": None, "admin": True}
    assert "cannot be shown again" in err  # stderr only: stdout stays the server's JSON


def test_keys_list_and_revoke() -> None:
    c = FakeClient()
    c.pages["/v1/keys"] = {
        "keys": [
            {"key_id": "k2", "namespace": "team-b", "created_at": "t2"},
            {
                "key_id": "k1",
                "namespace": "default",
                "admin": True,
                "description": "bootstrap",
                "created_at": "t1",
            },
        ]
    }
    code, out = run(["keys", "list"], c)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == [
        "KEY",
        "ID",
        "NAMESPACE",
        "ADMIN",
        "DESCRIPTION",
        "CREATED",
    ]
    assert lines[1].split() == ["k1", "default", "yes", "bootstrap", "t1"]
    assert lines[2].split() == ["k2", "team-b", "no", "-", "t2"]
    assert "nmb_" not in out
    c.pages["/v1/keys"] = {"keys": []}
    assert run(["keys", "ls"], c)[1] == "no keys\n"
    assert run(["keys", "revoke", "k2"], c) == (0, "revoked key k2\n")
    assert c.calls[-1] == ("revoke_key", ("k2",), {})


def test_keys_forbidden_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    c = FakeClient()

    def forbidden(**kw: Any) -> dict[str, Any]:
        raise NimbusApiError(403, 7, "only an admin key may create keys")

    c.create_key = forbidden  # type: ignore[method-assign,assignment]
    code, out, err = run_main(["keys", "create"], c, monkeypatch)
    assert (code, out) == (1, "")
    assert err == "nimbus: error: only an admin key may create keys (HTTP 403)\n"


# -- the rest -----------------------------------------------------------------------------------


def test_trigger_add_validates() -> None:
    with pytest.raises(UsageError, match="--schedule"):
        run(["trigger", "add", "f", "--type", "timer"], FakeClient())
    c = FakeClient()
    code, out = run(["trigger", "add", "f", "--type", "timer", "--schedule", "rate(1 minute)"], c)
    assert code == 0 and out == "added timer trigger t1 to f\n"
    assert c.calls[0][2] == {
        "schedule": "rate(1 minute)",
        "subject": None,
        "qualifier": None,
        "payload_format": None,
    }
    with pytest.raises(UsageError, match="--payload-format is for http triggers"):
        run(["trigger", "add", "f", "--type", "timer", "--schedule", "@every 1s",
             "--payload-format", "2.0"], FakeClient())  # fmt: skip
    c = FakeClient()
    code, out = run(["trigger", "add", "f", "--type", "http", "--payload-format", "2.0"], c)
    assert code == 0 and c.calls[0][2]["payload_format"] == "2.0"
    with pytest.raises(SystemExit):
        run(["trigger", "add", "f", "--type", "http", "--payload-format", "3.0"], FakeClient())


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
