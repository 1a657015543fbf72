"""The async CLI commands (invocation get --wait, dlq, event-config) against an in-memory fake."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from nimbus.cli import events
from nimbus.cli.commands import Context
from nimbus.cli.inputs import UsageError
from nimbus.cli.main import build_parser
from nimbus.cli.output import Console


class FakeClient:
    def __init__(
        self,
        invocations: list[dict[str, Any]] | None = None,
        routes: dict[tuple[str, str], Any] | None = None,
    ) -> None:
        self.invocations = invocations or []
        self.routes = routes or {}
        self.calls: list[tuple[str, str, Any]] = []

    def get_invocation(self, invocation_id: str) -> dict[str, Any]:
        self.calls.append(("GET", f"/v1/invocations/{invocation_id}", None))
        return self.invocations.pop(0) if len(self.invocations) > 1 else self.invocations[0]

    def request(self, method: str, path: str, body: Any = None) -> Any:
        self.calls.append((method, path, body))
        return self.routes.get((method, path), {})

    def close(self) -> None:
        pass


def run(argv: list[str], client: FakeClient, **kw: Any) -> tuple[int, str, str]:
    args = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(console=Console(out, err, {}), make_client=lambda: client, json=args.json)  # type: ignore[arg-type,return-value]
    if kw:
        return args.func(ctx, args, **kw), out.getvalue(), err.getvalue()
    return args.func(ctx, args), out.getvalue(), err.getvalue()


def inv(status: str, **extra: Any) -> dict[str, Any]:
    return {"invocation_id": "i-1", "function": "f", "status": status, "attempts": 1, **extra}


def test_invocation_get_waits_until_finished():
    client = FakeClient(
        [inv("QUEUED"), inv("RUNNING"), inv("SUCCEEDED", result_json='{"ok": true}')]
    )
    slept: list[float] = []
    code, out, _ = run(
        ["invocation", "get", "i-1", "--wait"], client, sleep=slept.append, clock=lambda: 0.0
    )
    assert code == 0 and "SUCCEEDED" in out and '{"ok": true}' in out
    assert slept == [0.25, 0.5]


def test_invocation_get_wait_fails_on_failed_and_times_out():
    code, out, _ = run(
        ["invocation", "get", "i-1", "--wait"],
        FakeClient([inv("FAILED", error_json='{"errorType": "E"}')]),
    )
    assert code == 1 and "FAILED" in out
    times = iter([0.0, 0.0, 5.0, 11.0])
    code, _, err = run(
        ["invocation", "get", "i-1", "--wait", "--timeout", "10"],
        FakeClient([inv("QUEUED")]),
        sleep=lambda s: None,
        clock=lambda: next(times),
    )
    assert code == 1 and "still QUEUED after 10s" in err
    # Without --wait, any status is a success.
    assert run(["invocation", "get", "i-1"], FakeClient([inv("QUEUED")]))[0] == 0


def test_dlq_list_and_replay():
    letters = {
        "dead_letters": [
            {
                "invocation_id": "i-9",
                "failed_at": "t",
                "attempts": 3,
                "reason": "retries_exhausted",
                "error_json": '{"errorType": "Boom", "errorMessage": "no"}',
            }
        ],
        "truncated": True,
    }
    client = FakeClient(
        routes={
            ("GET", "/v1/functions/f/deadletters?limit=5"): letters,
            ("POST", "/v1/functions/f/deadletters:replay"): {"invocation_ids": ["i-9"]},
        }
    )
    code, out, _ = run(["dlq", "list", "f", "--limit", "5"], client)
    assert code == 0 and "i-9" in out and "Boom: no" in out and "raise --limit" in out
    code, out, _ = run(["dlq", "replay", "f", "--id", "i-9"], client)
    assert code == 0 and out.splitlines() == ["replayed 1 dead letter of f", "i-9"]
    assert client.calls[-1] == (
        "POST",
        "/v1/functions/f/deadletters:replay",
        {"invocation_ids": ["i-9"]},
    )
    code, out, _ = run(["dlq", "replay", "f"], FakeClient())
    assert out == "no dead letters of f to replay\n"


def test_event_config_set_merges_with_the_current_one():
    path = "/v1/functions/f/event-invoke-config"
    client = FakeClient(
        routes={
            ("GET", path): {
                "name": "f",
                "max_retries": 1,
                "on_success": {"function": "", "subject": ""},
                "on_failure": {"function": "", "subject": "alerts"},
            }
        }
    )
    code, _, _ = run(
        ["event-config", "set", "f", "--max-event-age", "600", "--on-success", "function:audit"],
        client,
    )
    assert code == 0
    assert client.calls[-1] == (
        "PUT",
        path,
        {
            "max_retries": 1,
            "max_event_age_s": 600,
            "on_success": {"function": "audit"},
            "on_failure": {"function": "", "subject": "alerts"},
        },
    )
    with pytest.raises(UsageError):
        run(["event-config", "set", "f"], FakeClient())
    with pytest.raises(UsageError, match="function:NAME"):
        run(
            ["event-config", "set", "f", "--on-failure", "queue:x"],
            FakeClient(routes={("GET", path): {}}),
        )


def test_parse_destination():
    assert events.parse_destination("subject:a.b", "--x") == {"subject": "a.b"}
    assert events.parse_destination("", "--x") == {}
    assert json.dumps(events.parse_destination("function:g", "--x")) == '{"function": "g"}'
