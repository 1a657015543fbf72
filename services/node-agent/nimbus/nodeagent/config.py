"""The node-agent's configuration, read once from an environment mapping passed in."""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

from nimbus.common.config import (
    CommonConfig,
    ConfigError,
    get_float,
    get_hostport,
    get_int,
    get_str,
)
from nimbus.nodeagent.runtimes import RUNTIMES
from nimbus.nodeagent.spec import DEFAULT_REGION

DEFAULT_PYTHON = "/usr/bin/python3.11"
DEFAULT_NODE = "/usr/bin/node"
SANDBOXES = ("runc", "process")
DEFAULT_POOL = "python3.11=2,nodejs20=1,provided=1"
# Interpreters a runc sandbox can run: it sees only these host directories (read-only).
SANDBOX_VISIBLE = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/")
# AWS's region names: us-east-1, eu-central-2, us-gov-west-1, or one of your own in their form.
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")
_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def host_memory_mb() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)


def default_python() -> str:
    # Debian's interpreter lives outside /root (mode 0700), so a sandboxed user can run it.
    return DEFAULT_PYTHON if os.path.exists(DEFAULT_PYTHON) else sys.executable


def default_sandbox(runc: str | None, euid: int) -> str:
    """runc, which needs to be installed and to run as root (it creates namespaces and cgroups).
    Without it the node-agent does not start: running tenants' code unisolated is a choice made
    on purpose (NIMBUS_SANDBOX=process with NIMBUS_ALLOW_UNSAFE_SANDBOX=1), never a fallback."""
    if runc is None:
        raise ConfigError(
            "no sandbox: runc is not installed; install it (apt-get install runc) and run as root,"
            " or, for development only, set NIMBUS_SANDBOX=process NIMBUS_ALLOW_UNSAFE_SANDBOX=1"
        )
    if euid != 0:
        raise ConfigError(
            f"no sandbox: runc needs root and the node-agent runs as uid {euid}; run it as root,"
            " or, for development only, set NIMBUS_SANDBOX=process NIMBUS_ALLOW_UNSAFE_SANDBOX=1"
        )
    return "runc"


def parse_pool_sizes(raw: str) -> dict[str, int]:
    """'python3.11=2,nodejs20=1' per runtime, or one number for every runtime."""
    raw = raw.strip()
    if raw.isdigit():
        return dict.fromkeys(RUNTIMES, int(raw))
    sizes: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        runtime, sep, count = part.partition("=")
        if not sep or runtime.strip() not in RUNTIMES or not count.strip().isdigit():
            raise ConfigError(
                f"NIMBUS_WARM_POOL_SIZE={raw!r} must be a number or runtime=count pairs "
                f"(runtimes: {', '.join(RUNTIMES)}), e.g. {DEFAULT_POOL}"
            )
        sizes[runtime.strip()] = int(count)
    return sizes


@dataclass(frozen=True, slots=True)
class NodeAgentConfig:
    """
    NIMBUS_LISTEN_ADDR        gRPC listen address, also the address written to etcd (default
                              127.0.0.1:7301)
    NIMBUS_INVOKE_LANE_ADDR   the invoke lane: a framed TCP listener invokers send calls over
                              instead of the slower InvokeStream (default: NIMBUS_LISTEN_ADDR's
                              host, a free port; "off" serves InvokeStream only)
    NIMBUS_NODE_ID            this node's id in etcd keys and under HOME/nodes/ (default node-1)
    NIMBUS_FUNCMGR_ADDR       funcmgr's gRPC address, for FetchCode (default 127.0.0.1:7201)
    NIMBUS_NODE_MEMORY_MB     memory the node offers to instances (default 80% of host RAM)
    NIMBUS_NODE_LEASE_TTL_S   TTL of the node's etcd lease; the node record vanishes this long after
                              the agent dies (default 5, minimum 2)
    NIMBUS_INSTANCE_IDLE_S    an instance idle this long is destroyed (default 600)
    NIMBUS_SANDBOX            runc | process (default runc; without runc, or not as root, the agent
                              refuses to start). process isolates NOTHING and is refused unless
    NIMBUS_ALLOW_UNSAFE_SANDBOX=1 says so on purpose (development only; warned at every start and
                              in `nimbus admin status`)
    NIMBUS_RUNC               the runc binary (default: runc on PATH, else /usr/sbin/runc)
    NIMBUS_PYTHON             interpreter of python3.11 instances and of the provided runtime's shim
                              (default /usr/bin/python3.11 if it exists, else this interpreter;
                              with runc it must live under /usr, which sandboxes see)
    NIMBUS_NODEJS             node binary of nodejs20 instances (default /usr/bin/node; nodejs20 is
                              unavailable on the node when it is missing)
    NIMBUS_WARM_POOL_SIZE     generic sandboxes kept booted per runtime, e.g.
                              "python3.11=2,nodejs20=1" or one number for all (default
                              python3.11=2,nodejs20=1,provided=1; 0 disables)
    NIMBUS_CODE_CACHE_MB      disk budget of unpacked code; least recently used packages no instance
                              holds are evicted beyond it (default 4096)
    NIMBUS_SANDBOX_TMP_MB     size of each sandbox's private /tmp (a tmpfs, so it counts toward the
                              function's memory, as on Google Cloud Functions) (default 512)
    NIMBUS_SANDBOX_UID        the first of the unprivileged uids function code runs as under runc:
                              each sandbox takes its own uid (and gid) from the range, so per-uid
                              kernel limits are never shared between tenants; no host user may use
                              the range (default 10001)
    NIMBUS_SANDBOX_UIDS       how many uids the range holds: the most sandboxes a node runs at once,
                              the warm pool and package compiles included (default 1024)
    NIMBUS_SANDBOX_CPU        quota | shares: a function's CPU after init is capped at
                              memory/1769 MB cores (quota, as Lambda) or only weighted by it under
                              contention
                              (shares, faster for small functions on an idle node) (default quota)
    NIMBUS_NATS_URL           NATS with JetStream, where function logs are shipped (stream
                              NIMBUS_LOGS_<namespace>) (default nats://127.0.0.1:4222)
    NIMBUS_LOG_RETENTION_H    hours a log stream keeps a line (default 72)
    NIMBUS_LOG_MAX_MB         size bound of each namespace's log stream (NIMBUS_LOGS_<namespace>);
                              its own oldest lines go first (default 1024)
    NIMBUS_REGION             the cluster's region, as functions see it: AWS_REGION and
                              AWS_DEFAULT_REGION, and the region part of the function ARNs in their
                              context (default spec.DEFAULT_REGION, us-east-1)
    NIMBUS_LOG_SHIP_MS        the shortest time between two shipping rounds: lines reach the streams
                              (`nimbus logs`, usage, metrics) within about this long (default 1000)
    plus CommonConfig's NIMBUS_HOME, NIMBUS_ETCD_ENDPOINT, NIMBUS_REPLICA, NIMBUS_LOG_LEVEL,
    NIMBUS_DRAIN_S.
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
    runc: str | None = None
    node: str | None = None
    pool_sizes: dict[str, int] = field(default_factory=dict)
    code_cache_mb: int = 4096
    tmp_mb: int = 512
    sandbox_uid: int = 10001
    sandbox_uids: int = 1024
    cpu_quota: bool = True
    nats_url: str = "nats://127.0.0.1:4222"
    log_retention_h: float = 72.0
    log_max_mb: int = 1024
    log_ship_s: float = 1.0
    invoke_lane_addr: str = ""
    region: str = DEFAULT_REGION

    @classmethod
    def from_env(
        cls, env: Mapping[str, str], *, host_mb: int | None = None, euid: int | None = None
    ) -> NodeAgentConfig:
        host, port = get_hostport(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7301")
        get_hostport(env, "NIMBUS_FUNCMGR_ADDR", "127.0.0.1:7201")
        node_id = get_str(env, "NIMBUS_NODE_ID", "node-1")
        if not _NODE_ID.match(node_id):
            raise ConfigError(
                f"NIMBUS_NODE_ID={node_id!r} must be letters, digits, '.', '_' or '-' (max 63)"
            )
        default_mb = (host_mb if host_mb is not None else host_memory_mb()) * 8 // 10
        python = get_str(env, "NIMBUS_PYTHON", default_python())
        if not os.access(python, os.X_OK):
            raise ConfigError(f"NIMBUS_PYTHON={python!r} is not an executable file")
        runc = (
            env.get("NIMBUS_RUNC", "").strip()
            or shutil.which("runc")
            or _existing("/usr/sbin/runc")
        )
        sandbox = env.get("NIMBUS_SANDBOX", "").strip() or default_sandbox(
            runc, os.geteuid() if euid is None else euid
        )
        if sandbox not in SANDBOXES:
            raise ConfigError(f"NIMBUS_SANDBOX={sandbox!r} must be one of {', '.join(SANDBOXES)}")
        if sandbox == "process" and env.get("NIMBUS_ALLOW_UNSAFE_SANDBOX", "").strip() != "1":
            raise ConfigError(
                "NIMBUS_SANDBOX=process runs function code unisolated, as this user on the host "
                "network; set NIMBUS_ALLOW_UNSAFE_SANDBOX=1 too if that is meant (development "
                "only), else use runc"
            )
        node: str | None = env.get("NIMBUS_NODEJS", "").strip() or DEFAULT_NODE
        if node is not None and not os.access(node, os.X_OK):
            if "NIMBUS_NODEJS" in env:
                raise ConfigError(f"NIMBUS_NODEJS={node!r} is not an executable file")
            node = None
        if sandbox == "runc":
            if runc is None or not os.access(runc, os.X_OK):
                raise ConfigError(
                    f"NIMBUS_SANDBOX=runc but runc was not found (NIMBUS_RUNC={runc!r})"
                )
            for name, path in (("NIMBUS_PYTHON", python), ("NIMBUS_NODEJS", node)):
                if path is not None and not os.path.realpath(path).startswith(SANDBOX_VISIBLE):
                    raise ConfigError(
                        f"{name}={path!r} is not under /usr: "
                        "a runc sandbox cannot see it (use /usr/bin/python3.11)"
                    )
        cpu = get_str(env, "NIMBUS_SANDBOX_CPU", "quota")
        if cpu not in ("quota", "shares"):
            raise ConfigError(f"NIMBUS_SANDBOX_CPU={cpu!r} must be quota or shares")
        lane = get_str(env, "NIMBUS_INVOKE_LANE_ADDR", f"{host}:0")
        if lane != "off":
            lane_host, lane_port = get_hostport(env, "NIMBUS_INVOKE_LANE_ADDR", lane)
            lane = f"{lane_host}:{lane_port}"
        nats_url = get_str(env, "NIMBUS_NATS_URL", "nats://127.0.0.1:4222")
        if not nats_url.startswith(("nats://", "tls://")):
            raise ConfigError(f"NIMBUS_NATS_URL={nats_url!r} must start with nats:// or tls://")
        region = get_str(env, "NIMBUS_REGION", DEFAULT_REGION)
        if not _REGION.match(region) or len(region) > 32:
            raise ConfigError(
                f"NIMBUS_REGION={region!r} must look like an AWS region, e.g. us-east-1"
            )
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
            runc=runc,
            node=node,
            pool_sizes=parse_pool_sizes(env.get("NIMBUS_WARM_POOL_SIZE", "") or DEFAULT_POOL),
            code_cache_mb=get_int(env, "NIMBUS_CODE_CACHE_MB", 4096, minimum=64),
            tmp_mb=get_int(env, "NIMBUS_SANDBOX_TMP_MB", 512, minimum=1),
            sandbox_uid=get_int(env, "NIMBUS_SANDBOX_UID", 10001, minimum=1),
            sandbox_uids=get_int(env, "NIMBUS_SANDBOX_UIDS", 1024, minimum=1),
            cpu_quota=cpu == "quota",
            nats_url=nats_url,
            log_retention_h=get_float(env, "NIMBUS_LOG_RETENTION_H", 72.0, minimum=0.01),
            log_max_mb=get_int(env, "NIMBUS_LOG_MAX_MB", 1024, minimum=1),
            log_ship_s=get_int(env, "NIMBUS_LOG_SHIP_MS", 1000, minimum=10) / 1000,
            invoke_lane_addr="" if lane == "off" else lane,
            region=region,
        )


def _existing(path: str) -> str | None:
    return path if os.access(path, os.X_OK) else None
