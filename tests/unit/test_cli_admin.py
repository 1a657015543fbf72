"""`nimbus admin` argument handling (the calls themselves run in tests/e2e/test_rollout.py)."""

from __future__ import annotations

import io

import pytest
from nimbus.cli.main import build_parser, main


def run(*argv: str) -> tuple[int, str]:
    err = io.StringIO()
    code = main(
        list(argv),
        env={"NIMBUS_ENDPOINT": "http://127.0.0.1:9", "NIMBUS_API_KEY": "k"},
        stdout=io.StringIO(),
        stderr=err,
    )
    return code, err.getvalue()


def test_rollout_parses():
    args = build_parser().parse_args(
        ["admin", "rollout", "api", "--version", "v2", "--weight", "0.1"]
    )
    assert (args.service, args.version, args.weight, args.clear) == ("api", "v2", 0.1, False)


@pytest.mark.parametrize(
    "argv",
    [
        ["admin", "rollout", "api", "--version", "v2", "--weight", "1.5"],
        ["admin", "rollout", "api", "--version", "v2", "--weight", "x"],
        ["admin", "rollout", "funcmgr", "--version", "v2", "--weight", "0.5"],
        ["admin", "rollout", "api", "--weight", "0.5"],
        ["admin", "rollout", "api", "--clear", "--weight", "0.5"],
    ],
)
def test_bad_rollouts_are_usage_errors(argv):
    code, _ = run(*argv)
    assert code == 2


def test_status_warns_for_every_node_that_runs_functions_unisolated():
    import http.server
    import json
    import threading

    replies = {
        "/v2/admin/nodes": {
            "nodes": [
                {"node_id": "n1", "address": "a:1", "sandbox": "runc", "isolated": True},
                {"node_id": "n2", "address": "a:2", "sandbox": "process", "isolated": False},
            ]
        },
        "/v2/admin/endpoints": {"endpoints": [{"service": "api"}, {"service": "api"}]},
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            body = json.dumps(replies[self.path]).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out, err = io.StringIO(), io.StringIO()
    try:
        code = main(
            ["admin", "status"],
            env={
                "NIMBUS_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
                "NIMBUS_API_KEY": "k",
            },
            stdout=out,
            stderr=err,
        )
    finally:
        server.shutdown()
    assert code == 0
    warnings = [line for line in err.getvalue().splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "node n2" in warnings[0] and "WITHOUT a sandbox" in warnings[0]
    assert "process" in out.getvalue() and "replicas: api 2" in out.getvalue()
