"""NodeAgentConfig.from_env: the documented defaults, an example env, and fail-fast messages."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from nimbus.common.config import ConfigError
from nimbus.nodeagent.config import NodeAgentConfig, default_sandbox, parse_pool_sizes

pytestmark = pytest.mark.timeout(10)

BASE = {
    "NIMBUS_PYTHON": sys.executable,
    "NIMBUS_SANDBOX": "process",
    "NIMBUS_ALLOW_UNSAFE_SANDBOX": "1",
}


def test_defaults() -> None:
    env = {"NIMBUS_PYTHON": sys.executable, "NIMBUS_ALLOW_UNSAFE_SANDBOX": "1"}
    env["NIMBUS_SANDBOX"] = "process"
    cfg = NodeAgentConfig.from_env(env, host_mb=10_000, euid=1000)
    assert cfg.listen_addr == "127.0.0.1:7301"
    assert cfg.node_id == "node-1"
    assert cfg.funcmgr_addr == "127.0.0.1:7201"
    assert cfg.memory_mb == 8_000
    assert cfg.lease_ttl_s == 5
    assert cfg.idle_s == 600
    assert cfg.sandbox == "process"
    assert cfg.common.replica == "node-agent"
    assert cfg.pool_sizes == {"python3.11": 2, "nodejs20": 1, "provided": 1}
    assert (cfg.code_cache_mb, cfg.tmp_mb, cfg.sandbox_uid, cfg.sandbox_uids, cfg.cpu_quota) == (
        4096,
        512,
        10001,
        1024,
        True,
    )
    assert (cfg.nats_url, cfg.log_retention_h, cfg.log_max_mb) == (
        "nats://127.0.0.1:4222",
        72.0,
        1024,
    )


def test_default_sandbox_is_runc_as_root_and_nothing_else() -> None:
    assert default_sandbox("/usr/sbin/runc", 0) == "runc"
    for runc, euid in (("/usr/sbin/runc", 1000), (None, 0), (None, 1000)):
        with pytest.raises(ConfigError, match="^no sandbox: .*NIMBUS_ALLOW_UNSAFE_SANDBOX=1$"):
            default_sandbox(runc, euid)


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
        "NIMBUS_SANDBOX_UIDS": "64",
        "NIMBUS_SANDBOX_CPU": "shares",
        "NIMBUS_NATS_URL": "nats://127.0.0.1:4333",
        "NIMBUS_LOG_RETENTION_H": "1.5",
        "NIMBUS_LOG_MAX_MB": "64",
    }
    cfg = NodeAgentConfig.from_env(env, host_mb=1)
    assert (cfg.nats_url, cfg.log_retention_h, cfg.log_max_mb) == ("nats://127.0.0.1:4333", 1.5, 64)
    assert (cfg.sandbox, cfg.pool_sizes) == ("process", {"python3.11": 3, "nodejs20": 0})
    assert (cfg.code_cache_mb, cfg.tmp_mb, cfg.sandbox_uid, cfg.sandbox_uids, cfg.cpu_quota) == (
        1024,
        64,
        20000,
        64,
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
        ("NIMBUS_SANDBOX_UIDS", "0"),
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


@pytest.mark.parametrize(
    ("env", "euid", "says"),
    [
        # No runc: no silent fallback to running tenants' code on the host.
        ({"NIMBUS_RUNC": ""}, 0, "runc is not installed"),
        # runc, but not root.
        ({"NIMBUS_RUNC": "/bin/true"}, 1000, "runc needs root"),
        # process asked for, but not on purpose.
        ({"NIMBUS_SANDBOX": "process"}, 0, "NIMBUS_ALLOW_UNSAFE_SANDBOX=1"),
        ({"NIMBUS_SANDBOX": "process", "NIMBUS_ALLOW_UNSAFE_SANDBOX": "yes"}, 0, "ALLOW_UNSAFE"),
    ],
)
def test_the_node_agent_refuses_to_start_without_a_sandbox(
    env: dict[str, str], euid: int, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")  # no runc on PATH
    monkeypatch.setattr("nimbus.nodeagent.config._existing", lambda path: None)
    full = {"NIMBUS_PYTHON": sys.executable, **env}
    if not full.get("NIMBUS_RUNC"):
        full.pop("NIMBUS_RUNC", None)
    with pytest.raises(ConfigError, match=says) as err:
        NodeAgentConfig.from_env(full, host_mb=1000, euid=euid)
    assert "\n" not in str(err.value)  # one line that says how to fix it


def test_process_sandbox_on_purpose_and_runc_as_root_start() -> None:
    unsafe = {"NIMBUS_PYTHON": sys.executable, "NIMBUS_SANDBOX": "process"}
    unsafe["NIMBUS_ALLOW_UNSAFE_SANDBOX"] = "1"
    assert NodeAgentConfig.from_env(unsafe, host_mb=1000, euid=1000).sandbox == "process"
    root = {"NIMBUS_PYTHON": "/usr/bin/python3.11", "NIMBUS_RUNC": "/bin/true"}
    if Path("/usr/bin/python3.11").exists():
        assert NodeAgentConfig.from_env(root, host_mb=1000, euid=0).sandbox == "runc"
