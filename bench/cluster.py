"""A local cluster of the bench's own (temp NIMBUS_HOME, free ports) and the calls made on it."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.cluster import LocalCluster
from nimbus.cluster.ports import free_port

from bench.httpclient import Connection, Response, build_request

HOST = "127.0.0.1"
WARM_POOL_VAR = "NIMBUS_WARM_POOL_SIZE"
INVOKE_METHOD = "/nimbus.api.v1.Invocations/Invoke"


def _config_source(module: str) -> str:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return ""
    try:
        return Path(spec.origin).read_text()
    except OSError:
        return ""


def node_agent_honours(var: str) -> bool:
    """Whether the node-agent's config module reads var (its source names it)."""
    return var in _config_source("nimbus.nodeagent.config")


def config_default(service: str, var: str) -> str | None:
    """The default a service's config documents for var ("VAR  text (default X)"), if any;
    service is the package name (nodeagent, scheduler, invoker, ...)."""
    for line in _config_source(f"nimbus.{service}.config").splitlines():
        line = line.strip().removeprefix('"""')
        if line.startswith(var + " ") and "(default " in line:
            return line.split("(default ", 1)[1].split(")", 1)[0].split(";")[0].strip()
    return None


@dataclass(slots=True)
class Target:
    """The running cluster as the bench sees it: the gateway, the key, the process table."""

    cluster: LocalCluster
    api_key: str
    env: dict[str, str] = field(default_factory=dict)
    _conn: Connection | None = None
    _etcd: Any = None

    @property
    def port(self) -> int:
        return int(self.cluster.gateway_port)

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}

    async def request(self, method: str, path: str, body: Any = None) -> Response:
        if self._conn is None:
            self._conn = Connection(HOST, self.port)
        data = json.dumps(body).encode() if body is not None else b""
        raw = build_request(method, f"{HOST}:{self.port}", path, self.auth_headers(), data)
        return await self._conn.request(raw)

    async def create_function(self, body: dict[str, object]) -> None:
        res = await self.request("POST", "/v1/functions", body)
        if res.status != 200:
            raise RuntimeError(
                f"creating {body.get('name')!r}: HTTP {res.status} {res.body[:300]!r}"
            )

    def invoke_path(self, name: str) -> str:
        return f"/v1/functions/{name}:invoke"

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._etcd is not None:
            await self._etcd.close()
            self._etcd = None

    async def _etcd_client(self) -> Any:
        from nimbus.common.etcd import Etcd

        if self._etcd is None:
            self._etcd = Etcd(HOST, self.cluster.ports["etcd"], self.cluster.operator_identity)
        return self._etcd

    async def warm_sandboxes(self, runtime: str = "python3.11") -> int:
        """Idle warm-pool sandboxes of the runtime on every node,
        as the nodes report them in etcd."""
        from nimbus.common import keys
        from nimbus.common.model import NodeRecord

        kvs, _ = await (await self._etcd_client()).get_prefix(keys.nodes_prefix())
        return sum(NodeRecord.from_json(kv.value).warm.get(runtime, 0) for kv in kvs)

    async def wait_warm_sandboxes(
        self, count: int, timeout_s: float, runtime: str = "python3.11"
    ) -> bool:
        """Polls (bounded) until the nodes report at least count warm
        sandboxes; False on timeout."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while await self.warm_sandboxes(runtime) < count:
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def instance_functions(self) -> list[str]:
        """The function name of every instance record in etcd (all states)."""
        from nimbus.common import keys

        kvs, _ = await (await self._etcd_client()).get_prefix(keys.instances_prefix())
        names = []
        for kv in kvs:
            try:
                names.append(str(json.loads(kv.value).get("function", "")))
            except ValueError:
                names.append("")
        return names


def invoke_request_b64(name: str, event: bytes = b"{}") -> str:
    """A serialized nimbus.api.v1.InvokeRequest, for the gRPC load jobs."""
    from google.api import httpbody_pb2
    from nimbus.api.v1 import invocations_pb2

    body = httpbody_pb2.HttpBody(content_type="application/json", data=event)
    req = invocations_pb2.InvokeRequest(name=name, body=body)
    return base64.b64encode(req.SerializeToString()).decode()


@asynccontextmanager
async def running(
    env: Mapping[str, str] | None,
    *,
    keep_home: bool,
    log: Callable[[str], None],
    timeout_s: float = 120.0,
) -> AsyncIterator[Target]:
    """Starts a cluster in a fresh temp home on free ports; stops it (and removes the home unless
    keep_home) on the way out."""
    home = Path(tempfile.mkdtemp(prefix="nimbus-bench-"))
    cluster = LocalCluster(home=home, gateway_port=free_port(), env=dict(env or {}))
    log(
        f"bench: starting a cluster in {home} (gateway "
        f"{cluster.gateway_url}, env {dict(env or {})})"
    )
    try:
        await cluster.start(timeout_s=timeout_s)
        target = Target(cluster, cluster.credentials["api_key"], dict(env or {}))
        try:
            yield target
        finally:
            await target.close()
    finally:
        await cluster.stop()
        if keep_home:
            log(f"bench: kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)
