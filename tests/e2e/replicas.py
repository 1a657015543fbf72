"""Extra api replicas started by a test beside the cluster's own (not supervised), and what Envoy
sees of its upstreams, for the discovery, rollout and rolling-restart tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

from nimbus.cluster import LocalCluster

import tests.support as support
from tests.support import free_port


@dataclass
class Replica:
    name: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout_s)


def spawn_api(cluster: LocalCluster, name: str, api_versions: str, **env: str) -> Replica:
    """`python -m nimbus.api` as the cluster's api programs run, with its own name and port."""
    port = free_port()
    ports = cluster.ports
    cluster.issue_certificate("api", name)
    environ = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")},
        "NIMBUS_HOME": str(cluster.layout.home),
        "NIMBUS_REPLICA": name,
        "NIMBUS_LISTEN_ADDR": f"127.0.0.1:{port}",
        "NIMBUS_ETCD_ENDPOINT": f"127.0.0.1:{ports['etcd']}",
        "NIMBUS_FUNCMGR_ADDR": f"127.0.0.1:{ports['funcmgr']}",
        "NIMBUS_API_VERSIONS": api_versions,
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    log = open(cluster.layout.logs / f"{name}.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimbus.api"],
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    return Replica(name, port, proc)


def envoy_hosts(cluster: LocalCluster) -> dict[str, dict[str, bool]]:
    """cluster -> {host address: healthy} as Envoy's admin /clusters shows them."""
    url = f"http://127.0.0.1:{cluster.ports['envoy_admin']}/clusters?format=json"
    with urllib.request.urlopen(url, timeout=2) as res:
        data = json.load(res)
    out: dict[str, dict[str, bool]] = {}
    for c in data.get("cluster_statuses", []):
        hosts = {}
        for h in c.get("host_statuses", []):
            sock = h["address"]["socket_address"]
            status = h.get("health_status", {})
            healthy = status.get("eds_health_status", "HEALTHY") == "HEALTHY" and not any(
                v is True for k, v in status.items() if k.startswith("failed")
            )
            hosts[f"{sock['address']}:{sock['port_value']}"] = healthy
        out[c["name"]] = hosts
    return out


def envoy_counter(cluster: LocalCluster, name: str) -> int:
    url = f"http://127.0.0.1:{cluster.ports['envoy_admin']}/stats?filter=^{name}$"
    with urllib.request.urlopen(url, timeout=2) as res:
        for line in res.read().decode().splitlines():
            key, _, value = line.partition(": ")
            if key == name:
                return int(value)
    return 0


def envoy_runtime(cluster: LocalCluster) -> dict[str, str]:
    url = f"http://127.0.0.1:{cluster.ports['envoy_admin']}/runtime"
    with urllib.request.urlopen(url, timeout=2) as res:
        entries = json.load(res)["entries"]
    return {k: v.get("final_value", "") for k, v in entries.items()}


async def until(check, timeout_s: float, what: str, interval_s: float = 0.02):
    """Polls check() (sync, run in a thread; errors while the admin interface or a replica restarts
    count as not yet) until truthy; returns (value, seconds it took)."""
    start = time.monotonic()
    value = await support.until(
        check, timeout_s, what, interval_s, ignore=(Exception,), in_thread=True
    )
    return value, time.monotonic() - start
