"""NodeAgentConfig.from_env: the documented defaults, an example env, and fail-fast messages."""

from __future__ import annotations

import sys

import pytest

from nimbus.common.config import ConfigError
from nimbus.nodeagent.config import NodeAgentConfig

pytestmark = pytest.mark.timeout(10)

BASE = {"NIMBUS_PYTHON": sys.executable}


def test_defaults() -> None:
    cfg = NodeAgentConfig.from_env(BASE, host_mb=10_000)
    assert cfg.listen_addr == "127.0.0.1:7301"
    assert cfg.node_id == "node-1"
    assert cfg.funcmgr_addr == "127.0.0.1:7201"
    assert cfg.memory_mb == 8_000
    assert cfg.lease_ttl_s == 5
    assert cfg.idle_s == 600
    assert cfg.sandbox == "process"
    assert cfg.common.replica == "node-agent"


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
    }
    cfg = NodeAgentConfig.from_env(env, host_mb=1)
    assert (cfg.listen_addr, cfg.node_id, cfg.funcmgr_addr) == ("0.0.0.0:7400", "node-a.2", "10.0.0.1:7201")
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
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        NodeAgentConfig.from_env({**BASE, name: value}, host_mb=1000)
