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
