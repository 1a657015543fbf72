"""NodeAgentConfig.from_env: the documented defaults, an example env, and fail-fast messages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nimbus.common.config import ConfigError
from nimbus.nodeagent.config import NodeAgentConfig, default_sandbox, parse_pool_sizes

pytestmark = pytest.mark.timeout(10)

BASE = {"NIMBUS_PYTHON": sys.executable, "NIMBUS_SANDBOX": "process"}


def test_defaults() -> None:
    cfg = NodeAgentConfig.from_env({"NIMBUS_PYTHON": sys.executable}, host_mb=10_000, euid=1000)
    assert cfg.listen_addr == "127.0.0.1:7301"
    assert cfg.node_id == "node-1"
    assert cfg.funcmgr_addr == "127.0.0.1:7201"
    assert cfg.memory_mb == 8_000
    assert cfg.lease_ttl_s == 5
    assert cfg.idle_s == 600
    # Not root: no runc sandbox possible, the process driver (which warns loudly at start).
    assert cfg.sandbox == "process"
    assert cfg.common.replica == "node-agent"
    assert cfg.pool_sizes == {"python3.11": 2, "nodejs20": 1, "provided": 1}
    assert (cfg.code_cache_mb, cfg.tmp_mb, cfg.sandbox_uid, cfg.cpu_quota) == (
        4096,
        512,
        10001,
        True,
    )
    assert (cfg.nats_url, cfg.log_retention_h, cfg.log_max_mb) == (
        "nats://127.0.0.1:4222",
        72.0,
        1024,
    )


@pytest.mark.parametrize(
    ("runc", "euid", "expected"),
    [
        ("/usr/sbin/runc", 0, "runc"),
        ("/usr/sbin/runc", 1000, "process"),
        (None, 0, "process"),
        (None, 1000, "process"),
    ],
)
def test_default_sandbox(runc: str | None, euid: int, expected: str) -> None:
    assert default_sandbox(runc, euid) == expected


@pytest.mark.parametrize(
    ("raw", "sizes"),
    [
        ("python3.11=2,nodejs20=1", {"python3.11": 2, "nodejs20": 1}),
        (" provided=3 , python3.11=0 ", {"provided": 3, "python3.11": 0}),
        ("0", {"python3.11": 0, "nodejs20": 0, "provided": 0}),
        ("4", {"python3.11": 4, "nodejs20": 4, "provided": 4}),
    ],
)
def test_pool_sizes(raw: str, sizes: dict[str, int]) -> None:
    assert parse_pool_sizes(raw) == sizes


def test_example_env() -> None:
    env = {
        **BASE,
        "NIMBUS_LISTEN_ADDR": "0.0.0.0:7400",
        "NIMBUS_NODE_ID": "node-a.2",
        "NIMBUS_FUNCMGR_ADDR": "10.0.0.1:7201",
        "NIMBUS_NODE_MEMORY_MB": "2048",
        "NIMBUS_NODE_LEASE_TTL_S": "3",
        "NIMBUS_INSTANCE_IDLE_S": "30",
        "NIMBUS_HOME": "/tmp/nimbus-home",
        "NIMBUS_ETCD_ENDPOINT": "127.0.0.1:23790",
        "NIMBUS_SANDBOX": "process",
        "NIMBUS_WARM_POOL_SIZE": "python3.11=3,nodejs20=0",
        "NIMBUS_CODE_CACHE_MB": "1024",
        "NIMBUS_SANDBOX_TMP_MB": "64",
        "NIMBUS_SANDBOX_UID": "20000",
        "NIMBUS_SANDBOX_CPU": "shares",
        "NIMBUS_NATS_URL": "nats://127.0.0.1:4333",
        "NIMBUS_LOG_RETENTION_H": "1.5",
        "NIMBUS_LOG_MAX_MB": "64",
    }
    cfg = NodeAgentConfig.from_env(env, host_mb=1)
    assert (cfg.nats_url, cfg.log_retention_h, cfg.log_max_mb) == ("nats://127.0.0.1:4333", 1.5, 64)
    assert (cfg.sandbox, cfg.pool_sizes) == ("process", {"python3.11": 3, "nodejs20": 0})
    assert (cfg.code_cache_mb, cfg.tmp_mb, cfg.sandbox_uid, cfg.cpu_quota) == (
        1024,
        64,
        20000,
        False,
    )
    assert (cfg.listen_addr, cfg.node_id, cfg.funcmgr_addr) == (
        "0.0.0.0:7400",
        "node-a.2",
        "10.0.0.1:7201",
    )
    assert (cfg.memory_mb, cfg.lease_ttl_s, cfg.idle_s, cfg.python) == (2048, 3, 30, sys.executable)
    assert (cfg.common.home, cfg.common.etcd_port) == ("/tmp/nimbus-home", 23790)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NIMBUS_LISTEN_ADDR", "nope"),
        ("NIMBUS_FUNCMGR_ADDR", "host:"),
        ("NIMBUS_NODE_ID", "../etc"),
        ("NIMBUS_NODE_MEMORY_MB", "lots"),
        ("NIMBUS_NODE_LEASE_TTL_S", "1"),
        ("NIMBUS_INSTANCE_IDLE_S", "0"),
        ("NIMBUS_PYTHON", "/nonexistent/python"),
        ("NIMBUS_SANDBOX", "docker"),
        ("NIMBUS_WARM_POOL_SIZE", "python3.11=two"),
        ("NIMBUS_WARM_POOL_SIZE", "java=1"),
        ("NIMBUS_CODE_CACHE_MB", "1"),
        ("NIMBUS_SANDBOX_TMP_MB", "0"),
        ("NIMBUS_SANDBOX_UID", "0"),
        ("NIMBUS_SANDBOX_CPU", "unlimited"),
        ("NIMBUS_NODEJS", "/nonexistent/node"),
        ("NIMBUS_RUNC", "/nonexistent/runc"),
        ("NIMBUS_NATS_URL", "http://127.0.0.1:4222"),
        ("NIMBUS_LOG_RETENTION_H", "0"),
        ("NIMBUS_LOG_MAX_MB", "0"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    env = {**BASE, name: value}
    if name == "NIMBUS_RUNC":
        env["NIMBUS_SANDBOX"] = "runc"
    with pytest.raises(ConfigError, match=name):
        NodeAgentConfig.from_env(env, host_mb=1000)


def test_runc_needs_an_interpreter_the_sandbox_can_see(tmp_path: Path) -> None:
    python = tmp_path / "python3"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    env = {"NIMBUS_PYTHON": str(python), "NIMBUS_SANDBOX": "runc", "NIMBUS_RUNC": "/bin/true"}
    with pytest.raises(ConfigError, match="NIMBUS_PYTHON"):
        NodeAgentConfig.from_env(env, host_mb=1000)
