"""The node-agent as a real process against a real etcd and a real gRPC FetchCode peer
(scaffolding in test_nodeagent_support.py); the sandbox is the agent's default driver."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from nimbus.common import keys
from nimbus.common.etcd import Etcd
from nimbus.common.model import InstanceRecord, NodeRecord
from nimbus.internal.v1 import nodeagent_pb2
from nimbus.nodeagent.sandbox import cgroups, mounts

from tests.support import free_port, pid_gone, until
from tests.support.nodeagent import (
    BAD_IMPORT,
    CONTEXT,
    ECHO,
    EXITS,
    RAISES,
    RUNC,
    SLEEPS,
    Agent,
    CodeServer,
    cleanup_node,
    create,
    invoke,
    key_gone,
    launch,
    needs_runc,
    spec,
    start_agent,
)
from tests.support.servers import start_etcd, stop

pytestmark = pytest.mark.timeout(60)


# -- the tests ------------------------------------------------------------------------------------


async def test_node_record_appears(agent: Agent, etcd: Etcd) -> None:
    kv = await etcd.get(keys.node(agent.node_id))
    assert kv is not None and kv.lease != 0
    record = NodeRecord.from_json(kv.value)
    assert (record.node_id, record.address, record.memory_mb) == (agent.node_id, agent.addr, 4096)


async def test_node_record_says_what_is_cached_and_warm(
    agent: Agent, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    """For placement: the code packages the node holds, and its idle warm sandboxes per runtime."""
    info = await create(
        agent, code_server, "def handler(e, c):\n    return 'cached'\n", name="cached"
    )

    async def published() -> bool:
        kv = await etcd.get(keys.node(agent.node_id))
        record = NodeRecord.from_json(kv.value) if kv else None
        return (
            record is not None
            and info.spec.code_sha256 in record.cached_code
            and record.warm.get("python3.11", 0) == 2  # the default pool, refilled
        )

    await until(published, 10, "the node record to list the cached code and the warm pool")


async def test_echo_cold_then_warm_and_record_lifecycle(
    agent: Agent, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, ECHO)
    assert (info.node_id, info.node_address, info.spec.config.handler) == (
        agent.node_id,
        agent.addr,
        "app.handler",
    )
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

    await agent.stub.DestroyInstance(
        nodeagent_pb2.DestroyInstanceRequest(instance_id=info.instance_id), timeout=10
    )
    assert await etcd.get(key) is None
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invoke(agent, info.instance_id, {})
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # Destroying what is gone is done already (the scheduler may ask twice).
    await agent.stub.DestroyInstance(
        nodeagent_pb2.DestroyInstanceRequest(instance_id=info.instance_id), timeout=10
    )


async def test_context_fields(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create(agent, code_server, CONTEXT, name="ctx")
    reply = json.loads((await invoke(agent, info.instance_id, {}, request_id="rid-9")).payload)
    assert reply["rid"] == "rid-9" and reply["name"] == "ctx" and reply["mem"] == 128
    assert 0 < reply["left"] <= 3000


async def test_raising_handler_returns_function_error(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
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
    assert json.loads(reply.payload) == {
        "errorType": "Timeout",
        "errorMessage": "Task timed out after 1.00 seconds (timeout_s 1; raise it with nimbus"
        " deploy --timeout S if the work needs longer)",
        "stackTrace": [],
    }
    assert await etcd.get(keys.instance(agent.node_id, info.instance_id)) is None
    assert pid_gone(pid)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await invoke(agent, info.instance_id, {})
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_calls_on_one_instance_run_one_at_a_time(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, SLEEPS)
    started = time.monotonic()
    replies = await asyncio.gather(
        *(invoke(agent, info.instance_id, {"s": 0.3}, request_id=f"r{i}") for i in range(3))
    )
    assert all(json.loads(r.payload) == "slept" for r in replies)
    assert time.monotonic() - started >= 0.9
    assert sum(r.cold_start for r in replies) == 1


async def test_process_exit_mid_call(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create(agent, code_server, EXITS)
    reply = await invoke(agent, info.instance_id, {}, request_id="req-x")
    error = json.loads(reply.payload)
    assert reply.function_error == "Unhandled" and error["errorType"] == "Runtime.ExitError"
    assert (
        error["errorMessage"] == "RequestId: req-x Error: Runtime exited with error: exit status 3"
    )
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
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> None:
    agent = await start_agent(
        tmp_path_factory.mktemp("idle"), etcd_endpoint, code_server[0], NIMBUS_INSTANCE_IDLE_S="1"
    )
    try:
        info = await create(agent, code_server, ECHO)
        pid = agent.instance_pid(info.instance_id)
        await until(
            await key_gone(etcd, keys.instance(agent.node_id, info.instance_id)),
            5,
            "the idle instance to be reaped",
        )
        await until(
            lambda: asyncio.sleep(0, pid_gone(pid)), 5, "the idle instance's process to exit"
        )
    finally:
        await agent.stop()


async def test_sigterm_stops_instances_and_deregisters(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
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


@pytest.mark.slow
async def test_kill_9_expires_node_and_kills_instances(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> None:
    tmp = tmp_path_factory.mktemp("kill")
    agent = await start_agent(tmp, etcd_endpoint, code_server[0])
    infos = [await create(agent, code_server, ECHO) for _ in range(2)]
    pids = [agent.instance_pid(i.instance_id) for i in infos]
    await invoke(agent, infos[0].instance_id, {})
    await agent.stop(signal.SIGKILL, cleanup=False)
    try:
        killed = time.monotonic()
        await until(await key_gone(etcd, keys.node(agent.node_id)), 8, "the node record to expire")
        took = time.monotonic() - killed
        assert took < 5, f"node record outlived the 2 s lease by {took:.1f} s"
        for info in infos:
            assert await etcd.get(keys.instance(agent.node_id, info.instance_id)) is None
        await until(
            lambda: asyncio.sleep(0, all(pid_gone(p) for p in pids)),
            5,
            "the instances to die with the agent",
        )
    finally:
        await asyncio.to_thread(cleanup_node, agent.home, agent.node_id)


@pytest.mark.slow
async def test_restart_cleans_leftovers(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> None:
    """A node-agent restarted on the same home kills leftover shims and deletes stale records."""
    node_id = f"node-{secrets.token_hex(3)}"
    home = tmp_path_factory.mktemp("restart") / node_id
    run_dir = home / "nodes" / node_id / "run"
    run_dir.mkdir(parents=True)
    # A process that looks like a surviving shim of instance 0123456789ab (its argv is what counts).
    orphan = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
            "/x/bootstrap.py",
            "--nimbus-instance=0123456789ab",
        ],
        start_new_session=True,
    )
    (run_dir / "0123456789ab.pid").write_text(str(orphan.pid))
    stale = keys.instance(node_id, "0123456789ab")
    await etcd.put(stale, b"{}")
    agent = await launch(home, node_id, etcd_endpoint, code_server[0])
    try:
        assert await asyncio.to_thread(orphan.wait, 5) == -signal.SIGKILL
        assert await etcd.get(stale) is None
        assert not (run_dir / "0123456789ab.pid").exists()
        assert await etcd.get(keys.node(node_id)) is not None
    finally:
        await agent.stop()
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


SPINS = "def handler(event, context):\n    while True:\n        pass\n"


@pytest.mark.slow
@needs_runc
async def test_restart_deletes_leftover_containers(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> None:
    """A container busy in a handler outlives a kill -9 of its agent; the agent's next start on the
    same node deletes it, with its mounts and its cgroup, and leaves nobody else's."""
    node_id = f"node-{secrets.token_hex(3)}"
    home = tmp_path_factory.mktemp("restart-runc") / node_id
    home.mkdir()
    agent = await launch(home, node_id, etcd_endpoint, code_server[0], NIMBUS_WARM_POOL_SIZE="0")
    info = await create(agent, code_server, SPINS, timeout_s=60)
    call = asyncio.ensure_future(invoke(agent, info.instance_id, {}))
    await asyncio.sleep(0.5)
    pid = agent.instance_pid(info.instance_id)
    container = f"nimbus-{node_id}-{info.instance_id}"
    await agent.stop(signal.SIGKILL, cleanup=False)
    # The call fails: by the connection's reset, or cancelled when stop() closes the channel first.
    with pytest.raises((grpc.aio.AioRpcError, asyncio.CancelledError)):
        await call
    assert not pid_gone(pid)
    assert container in runc_ids(home, node_id)
    again = await launch(home, node_id, etcd_endpoint, code_server[0], NIMBUS_WARM_POOL_SIZE="0")
    try:
        await until(
            lambda: asyncio.sleep(0, pid_gone(pid)), 5, "the leftover container to be killed"
        )
        assert container not in runc_ids(home, node_id)
        task_dir = home / "nodes" / node_id / "sandbox" / "tasks" / info.instance_id
        assert not mounts.mount_points(task_dir)
        assert not (cgroups.ROOT / "pids" / "nimbus" / node_id / container).exists()
        # The restarted agent works.
        fresh = await create(again, code_server, ECHO)
        assert json.loads((await invoke(again, fresh.instance_id, {"ok": 1})).payload) == {"ok": 1}
    finally:
        await again.stop()


def runc_ids(home: Path, node_id: str) -> list[str]:
    root = home / "nodes" / node_id / "sandbox" / "runc"
    out = subprocess.run(
        [RUNC or "runc", "--root", str(root), "list", "-q"], capture_output=True, text=True
    ).stdout
    return out.split()


@pytest.mark.slow
async def test_lost_lease_is_replaced_and_records_rewritten(
    agent: Agent, etcd: Etcd, code_server: tuple[str, CodeServer]
) -> None:
    """As after an etcd outage longer than the TTL: the agent takes a new lease, re-puts it all."""
    info = await create(agent, code_server, ECHO, name="lease")
    node_key, inst_key = keys.node(agent.node_id), keys.instance(agent.node_id, info.instance_id)
    old = await etcd.get(node_key)
    assert old is not None
    await etcd.revoke_lease(old.lease)
    assert await etcd.get(inst_key) is None

    async def rewritten() -> bool:
        node, inst = await etcd.get(node_key), await etcd.get(inst_key)
        return node is not None and inst is not None and node.lease == inst.lease != old.lease

    await until(rewritten, 5, "the node and instance records under a new lease")
    assert json.loads((await invoke(agent, info.instance_id, {"still": "works"})).payload) == {
        "still": "works"
    }


@pytest.mark.slow
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

    await until(waiting_for_etcd, 10, "the agent to retry etcd")
    assert not agent_task.done()  # still alive, still waiting (launch() fails if the process exits)
    proc = start_etcd(tmp / "data", client, peer)
    etcd = Etcd("127.0.0.1", client)
    agent = await agent_task
    try:
        assert await etcd.get(keys.node(node_id)) is not None
        info = await create(agent, code_server, ECHO)
        inst_key = keys.instance(node_id, info.instance_id)

        # etcd restarted without its data (a new member): the lease is gone; the agent writes
        # everything again.
        stop(proc)
        proc = start_etcd(tmp / "data-wiped", client, peer)

        async def back() -> bool:
            try:
                return (
                    await etcd.get(keys.node(node_id)) is not None
                    and await etcd.get(inst_key) is not None
                )
            except Exception:
                return False

        await until(back, 15, "the node and instance records after an etcd wipe", interval_s=0.2)
        assert json.loads((await invoke(agent, info.instance_id, {"k": 1})).payload) == {"k": 1}
        assert agent.proc.poll() is None
    finally:
        await agent.stop()
        await etcd.close()
        stop(proc)


# A handler that lies about its clock: time.perf_counter_ns (what the shim times calls and the
# import with) is frozen, so the runtime reports ~0 µs for a call that sleeps 1.2 s.
FROZEN_CLOCK = (
    "import time\n"
    "_real_sleep = time.sleep\n"
    "time.perf_counter_ns = lambda: 42\n"
    "_real_sleep(0.3)\n"
    "def handler(event, context):\n"
    "    _real_sleep(1.2)\n"
    "    return 'done'\n"
)


async def test_billing_uses_the_agents_clock_not_the_sandboxes(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, FROZEN_CLOCK, name="liar")
    reply = await invoke(agent, info.instance_id, {}, log_tail=True)
    assert json.loads(reply.payload) == "done"
    assert reply.duration_us >= 1_200_000 and reply.billed_ms >= 1200
    assert reply.cold_start and reply.init_duration_us >= 300_000
    report = next(
        line for line in reply.log_tail.decode().splitlines() if line.startswith("REPORT")
    )
    billed = int(report.split("Billed Duration: ")[1].split(" ")[0])
    assert billed >= 1200, report
