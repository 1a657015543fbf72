"""instance_concurrency through a real node-agent: overlapping calls on one instance, each reply
matched to its own request, the slot limit held by the agent, what a timeout does to the others."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from nimbus.common.etcd import Etcd
from nimbus.internal.v1 import nodeagent_pb2, types_pb2

from tests.support.nodeagent import Agent, CodeServer, invoke, start_agent

pytestmark = pytest.mark.timeout(120)

PY_SLEEPS = """
import sys
import time

def handler(event, context):
    started = time.time()
    time.sleep(event["s"])
    if event.get("say"):
        # One write per line: print() writes text and newline apart, which threads interleave.
        sys.stdout.write(event["say"] + "\\n")
        time.sleep(event.get("linger", 0))
    return {"n": event["n"], "request_id": context.request_id, "start": started, "end": time.time()}
"""

NODE_SLEEPS = """
exports.handler = async (event, context) => {
  const start = Date.now() / 1000;
  await new Promise((r) => setTimeout(r, event.s * 1000));
  return { n: event.n, request_id: context.awsRequestId, start, end: Date.now() / 1000 };
};
"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def agent(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> AsyncIterator[Agent]:
    a = await start_agent(tmp_path_factory.mktemp("concurrency"), etcd_endpoint, code_server[0])
    try:
        yield a
    finally:
        await a.stop()


async def create(
    agent: Agent,
    code_server: tuple[str, CodeServer],
    runtime: str,
    concurrency: int,
    timeout_s: int = 10,
) -> str:
    files = {"app.py": PY_SLEEPS} if runtime == "python3.11" else {"app.js": NODE_SLEEPS}
    sha = code_server[1].add(files)
    spec = types_pb2.InstanceSpec(
        namespace="default",
        function=f"conc-{runtime.replace('.', '')}-{concurrency}",
        version="$LATEST",
        code_sha256=sha,
        function_revision=1,
        config=types_pb2.FunctionConfig(
            runtime=runtime,
            handler="app.handler",
            memory_mb=128,
            timeout_s=timeout_s,
            instance_concurrency=concurrency,
        ),
    )
    info = await agent.stub.CreateInstance(
        nodeagent_pb2.CreateInstanceRequest(spec=spec), timeout=30
    )
    return info.instance_id


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def burst(
    agent: Agent, iid: str, count: int, sleep_s: float, tag: str
) -> tuple[list[dict], float]:
    started = time.monotonic()
    replies = await asyncio.gather(
        *(invoke(agent, iid, {"n": n, "s": sleep_s}, request_id=f"{tag}-{n}") for n in range(count))
    )
    elapsed = time.monotonic() - started
    assert all(r.function_error == "" for r in replies), [r.payload for r in replies]
    return [json.loads(r.payload) for r in replies], elapsed


@pytest.mark.parametrize("runtime", ["python3.11", "nodejs20"])
async def test_ten_calls_overlap_on_one_instance(
    agent: Agent, code_server: tuple[str, CodeServer], runtime: str
) -> None:
    iid = await create(agent, code_server, runtime, 10)
    await invoke(agent, iid, {"n": -1, "s": 0}, request_id=f"{runtime}-warm")
    results, elapsed = await burst(agent, iid, 10, 0.3, runtime)
    # Each reply is its own call's: the event's n and the context's request id agree.
    assert [(r["n"], r["request_id"]) for r in results] == [
        (n, f"{runtime}-{n}") for n in range(10)
    ]
    # Ten 300 ms calls one after another take 3 s; side by side, about 0.3 s.
    assert elapsed < 2.0, f"10 × 300 ms took {elapsed:.2f}s"
    assert peak_overlap([(r["start"], r["end"]) for r in results]) > 1


async def test_the_agent_never_runs_more_calls_than_slots(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    iid = await create(agent, code_server, "python3.11", 2)
    results, _ = await burst(agent, iid, 6, 0.2, "slots")
    assert sorted(r["request_id"] for r in results) == sorted(f"slots-{n}" for n in range(6))
    assert peak_overlap([(r["start"], r["end"]) for r in results]) <= 2


async def test_a_timeout_ends_the_instance_and_its_other_calls(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    iid = await create(agent, code_server, "python3.11", 3, timeout_s=1)
    stuck_task = asyncio.create_task(invoke(agent, iid, {"n": 0, "s": 30}, request_id="stuck"))
    # Once "stuck" runs, a second call started now reaches its own timeout only after it.
    log = agent.home / "nodes" / agent.node_id / "logs" / f"{iid}.jsonl"
    deadline = time.monotonic() + 10
    while (
        not (log.exists() and "START RequestId: stuck" in log.read_text())
        and time.monotonic() < deadline
    ):
        await asyncio.sleep(0.05)
    other = await invoke(agent, iid, {"n": 1, "s": 30}, request_id="other")
    stuck = await stuck_task
    assert (
        stuck.function_error == "Unhandled" and json.loads(stuck.payload)["errorType"] == "Timeout"
    )
    err = json.loads(other.payload)
    assert other.function_error == "Unhandled" and err["errorType"] == "Runtime.ExitError", err
    assert "request stuck" in err["errorMessage"], err
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await invoke(agent, iid, {"n": 2, "s": 0}, request_id="after")
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_output_of_overlapping_calls_is_nobodys(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    iid = await create(agent, code_server, "python3.11", 4)
    replies = await asyncio.gather(
        *(
            agent.stub.Invoke(
                nodeagent_pb2.InstanceInvokeRequest(
                    instance_id=iid,
                    request_id=f"say-{n}",
                    log_tail=True,
                    # Each prints midway through its 0.6 s, so each line comes while the other call
                    # runs too, however far apart the two calls start (up to 0.3 s).
                    payload=json.dumps(
                        {"n": n, "s": 0.3, "say": f"said by {n}", "linger": 0.3}
                    ).encode(),
                ),
                timeout=30,
            )
            for n in range(2)
        )
    )
    for n, reply in enumerate(replies):
        tail = reply.log_tail.decode()
        assert f"START RequestId: say-{n}" in tail and f"END RequestId: say-{n}" in tail
        assert f"said by {1 - n}" not in tail  # another call's output is never in this call's tail
    path = agent.home / "nodes" / agent.node_id / "logs" / f"{iid}.jsonl"

    def said() -> dict[str, str]:
        if not path.exists():
            return {}
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return {
            " ".join(r["message"].split()[:3]): r["request_id"]
            for r in records
            if r["message"].startswith(("said by", "START", "END"))
        }

    deadline = time.monotonic() + 10
    while len(said()) < 6 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    got = said()
    for n in range(2):
        assert (
            got.get(f"START RequestId: say-{n}") == got.get(f"END RequestId: say-{n}") == f"say-{n}"
        ), got
    # Printed while both ran: not attributable to either.
    assert {got.get("said by 0"), got.get("said by 1")} <= {""}, got
