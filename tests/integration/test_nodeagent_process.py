"""The process driver (no isolation; development only, and only with NIMBUS_ALLOW_UNSAFE_SANDBOX=1)
still runs all three runtimes, captures logs and enforces timeouts, says loudly at start that it
isolates nothing, and puts that in its node record; without the flag the agent does not start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nimbus.common import keys
from nimbus.common.etcd import Etcd
from nimbus.common.model import NodeRecord

from tests.support import pid_gone
from tests.support.nodeagent import (
    ECHO,
    SLEEPS,
    Agent,
    CodeServer,
    create,
    create_files,
    invoke,
    start_agent,
)
from tests.support.runtimes import NODE_HANDLERS, RUNTIME_API_CLIENT

pytestmark = pytest.mark.timeout(60)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def agent(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> AsyncIterator[Agent]:
    a = await start_agent(
        tmp_path_factory.mktemp("process"),
        etcd_endpoint,
        code_server[0],
        NIMBUS_SANDBOX="process",
        NIMBUS_ALLOW_UNSAFE_SANDBOX="1",
    )
    try:
        yield a
    finally:
        await a.stop()


async def test_warns_loudly_that_nothing_is_isolated(agent: Agent) -> None:
    warning = next(
        json.loads(line) for line in agent.log().splitlines() if "SANDBOX DISABLED" in line
    )
    assert warning["level"] == "WARNING" and "NO isolation" in warning["msg"]


async def test_the_node_record_says_the_sandbox(agent: Agent, etcd: Etcd) -> None:
    kv = await etcd.get(keys.node(agent.node_id))
    assert kv is not None and NodeRecord.from_json(kv.value).sandbox == "process"


def test_without_the_unsafe_flag_the_agent_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIMBUS_")}
    env.update(NIMBUS_HOME=str(tmp_path), NIMBUS_SANDBOX="process", NIMBUS_ALLOW_PLAINTEXT="1")
    proc = subprocess.run(
        [sys.executable, "-m", "nimbus.nodeagent"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 78, proc.stderr
    assert "NIMBUS_ALLOW_UNSAFE_SANDBOX=1" in proc.stdout + proc.stderr


async def test_three_runtimes(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    py = await create(agent, code_server, ECHO)
    assert json.loads((await invoke(agent, py.instance_id, {"py": 1})).payload) == {"py": 1}
    node = await create_files(
        agent, code_server, {"h.js": NODE_HANDLERS}, runtime="nodejs20", handler="h.syncHandler"
    )
    assert json.loads((await invoke(agent, node.instance_id, {"n": 2})).payload) == {"sync": 4}
    custom = await create_files(
        agent,
        code_server,
        {"bootstrap": RUNTIME_API_CLIENT},
        ("bootstrap",),
        runtime="provided",
        handler="h",
    )
    reply = await invoke(agent, custom.instance_id, {"c": 3}, request_id="p-1", log_tail=True)
    assert json.loads(reply.payload)["event"] == {"c": 3}
    assert "handling p-1" in reply.log_tail.decode()


async def test_timeout(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create(agent, code_server, SLEEPS, timeout_s=1)
    pid = agent.instance_pid(info.instance_id)
    started = time.monotonic()
    reply = await invoke(agent, info.instance_id, {"s": 30})
    assert time.monotonic() - started < 1.5
    assert json.loads(reply.payload)["errorType"] == "Timeout"
    assert pid_gone(pid)
