"""The node-agent's configuration, read once from an environment mapping passed in."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import CommonConfig, ConfigError, get_hostport, get_int, get_str

DEFAULT_PYTHON = "/usr/bin/python3.11"
SANDBOXES = ("process",)
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


def default_python() -> str:
    # Debian's interpreter lives outside /root (mode 0700), so a sandboxed user can run it.
    return DEFAULT_PYTHON if os.path.exists(DEFAULT_PYTHON) else sys.executable


@dataclass(frozen=True, slots=True)
class NodeAgentConfig:
    """
    NIMBUS_LISTEN_ADDR        gRPC listen address, also the address written to etcd (default 127.0.0.1:7301)
    NIMBUS_NODE_ID            this node's id in etcd keys and under HOME/nodes/ (default node-1)
    NIMBUS_FUNCMGR_ADDR       funcmgr's gRPC address, for FetchCode (default 127.0.0.1:7201)
    NIMBUS_NODE_MEMORY_MB     memory the node offers to instances (default 80% of host RAM)
    NIMBUS_NODE_LEASE_TTL_S   TTL of the node's etcd lease; the node record vanishes this long after
                              the agent dies (default 5, minimum 2)
    NIMBUS_INSTANCE_IDLE_S    an instance idle this long is destroyed (default 600)
    NIMBUS_PYTHON             interpreter for python3.11 instances
                              (default /usr/bin/python3.11 if it exists, else this interpreter)
    NIMBUS_SANDBOX            sandbox driver: process (default process; runc comes later)
    plus CommonConfig's NIMBUS_HOME, NIMBUS_ETCD_ENDPOINT, NIMBUS_REPLICA, NIMBUS_LOG_LEVEL, NIMBUS_DRAIN_S.
    """

    common: CommonConfig
    listen_addr: str
    node_id: str
    funcmgr_addr: str
    memory_mb: int
    lease_ttl_s: int
    idle_s: int
    python: str
    sandbox: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, host_mb: int | None = None) -> NodeAgentConfig:
        host, port = get_hostport(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7301")
        get_hostport(env, "NIMBUS_FUNCMGR_ADDR", "127.0.0.1:7201")
        node_id = get_str(env, "NIMBUS_NODE_ID", "node-1")
        if not _NODE_ID.match(node_id):
            raise ConfigError(f"NIMBUS_NODE_ID={node_id!r} must be letters, digits, '.', '_' or '-' (max 63)")
        default_mb = (host_mb if host_mb is not None else host_memory_mb()) * 8 // 10
        python = get_str(env, "NIMBUS_PYTHON", default_python())
        if not os.access(python, os.X_OK):
            raise ConfigError(f"NIMBUS_PYTHON={python!r} is not an executable file")
        sandbox = get_str(env, "NIMBUS_SANDBOX", "process")
        if sandbox not in SANDBOXES:
            raise ConfigError(f"NIMBUS_SANDBOX={sandbox!r} must be one of {', '.join(SANDBOXES)}")
        return cls(
            common=CommonConfig.from_env(env, "node-agent"),
            listen_addr=f"{host}:{port}",
            node_id=node_id,
            funcmgr_addr=get_str(env, "NIMBUS_FUNCMGR_ADDR", "127.0.0.1:7201"),
            memory_mb=get_int(env, "NIMBUS_NODE_MEMORY_MB", default_mb, minimum=128),
            lease_ttl_s=get_int(env, "NIMBUS_NODE_LEASE_TTL_S", 5, minimum=2),
            idle_s=get_int(env, "NIMBUS_INSTANCE_IDLE_S", 600, minimum=1),
            python=python,
            sandbox=sandbox,
        )
