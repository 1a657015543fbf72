"""The Lambda surface a function is given at LOAD (issue 24.1): the account id, the ARN, the log
names, the environment and the cluster region (NIMBUS_REGION). Pure."""

from __future__ import annotations

import re
import sys

import pytest
from nimbus.common.config import ConfigError
from nimbus.common.model import FunctionConfig
from nimbus.nodeagent.config import NodeAgentConfig
from nimbus.nodeagent.spec import (
    DEFAULT_REGION,
    InstanceSpec,
    account_id,
    function_arn,
    load_header,
    log_stream_name,
)

pytestmark = pytest.mark.timeout(10)

BASE = {"NIMBUS_PYTHON": sys.executable, "NIMBUS_SANDBOX": "process"}
BASE["NIMBUS_ALLOW_UNSAFE_SANDBOX"] = "1"


def spec(version: str = "$LATEST", runtime: str = "python3.11", **env: str) -> InstanceSpec:
    cfg = FunctionConfig(runtime=runtime, handler="app.handler", memory_mb=256, env=env)
    return InstanceSpec("team-a", "orders", version, cfg, "sha", 1)


def test_account_id_is_twelve_stable_digits_per_namespace() -> None:
    ids = {ns: account_id(ns) for ns in ("default", "team-a", "team-b", "")}
    assert all(re.fullmatch(r"\d{12}", v) for v in ids.values())
    assert len(set(ids.values())) == len(ids)
    # Stable: the same on every node and after every restart (sha256, not hash()).
    assert account_id("default") == "984327297149"


@pytest.mark.parametrize(
    ("qualifier", "arn_tail"), [("", ":function:orders"), ("7", ":function:orders:7")]
)
def test_function_arn_has_lambdas_form(qualifier: str, arn_tail: str) -> None:
    arn = function_arn("eu-west-3", "team-a", "orders", qualifier)
    assert arn == f"arn:aws:lambda:eu-west-3:{account_id('team-a')}{arn_tail}"


@pytest.mark.parametrize(
    ("version", "runtime", "arn_suffix", "execution_env"),
    [
        ("$LATEST", "python3.11", ":function:orders", "AWS_Lambda_python3.11"),
        ("3", "nodejs20", ":function:orders:3", "AWS_Lambda_nodejs20.x"),
        ("3", "provided", ":function:orders:3", None),
    ],
)
def test_load_header(
    version: str, runtime: str, arn_suffix: str, execution_env: str | None
) -> None:
    s = spec(version, runtime, GREETING="hi")
    stream = log_stream_name(s, "abc123", 86400 * 365)
    assert stream == f"1971/01/01/[{version}]abc123"
    h = load_header(s, "/var/task", region="ap-south-1", log_stream=stream)
    assert str(h["function_arn"]).endswith(arn_suffix)
    assert str(h["function_arn"]).startswith("arn:aws:lambda:ap-south-1:")
    assert (h["log_group_name"], h["log_stream_name"]) == ("/aws/lambda/orders", stream)
    env = h["env"]
    assert isinstance(env, dict)
    assert env.get("AWS_EXECUTION_ENV") == execution_env
    assert {
        k: env[k] for k in list(env) if k.startswith(("AWS_LAMBDA_", "AWS_REG", "AWS_DEF"))
    } == {
        "AWS_LAMBDA_FUNCTION_NAME": "orders",
        "AWS_LAMBDA_FUNCTION_VERSION": version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/orders",
        "AWS_LAMBDA_LOG_STREAM_NAME": stream,
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": "ap-south-1",
        "AWS_DEFAULT_REGION": "ap-south-1",
    }
    assert (env["_HANDLER"], env["LAMBDA_TASK_ROOT"], env["LAMBDA_RUNTIME_DIR"]) == (
        "app.handler",
        "/var/task",
        "/var/runtime",
    )
    assert (env["TZ"], env["GREETING"]) == (":UTC", "hi")


def test_the_functions_own_region_and_tz_win_but_not_lambdas_names() -> None:
    env = load_header(spec(AWS_REGION="eu-north-1", TZ="Europe/Paris"), "/var/task")["env"]
    assert isinstance(env, dict)
    assert (env["AWS_REGION"], env["AWS_DEFAULT_REGION"], env["TZ"]) == (
        "eu-north-1",
        DEFAULT_REGION,
        "Europe/Paris",
    )


def test_region_config() -> None:
    assert NodeAgentConfig.from_env(BASE, host_mb=1000, euid=1000).region == "us-east-1"
    cfg = NodeAgentConfig.from_env({**BASE, "NIMBUS_REGION": "us-gov-west-1"}, host_mb=1000)
    assert cfg.region == "us-gov-west-1"
    for bad in ("US-EAST-1", "local", "us east 1", "x" * 40 + "-1"):
        with pytest.raises(ConfigError, match="NIMBUS_REGION="):
            NodeAgentConfig.from_env({**BASE, "NIMBUS_REGION": bad}, host_mb=1000)
