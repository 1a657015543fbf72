"""The three runtimes, per-call logs and the warm pool, through a real node-agent.

Runs on the agent's default sandbox (runc when installed and root); nothing here is about
isolation (test_sandbox_runc.py is).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from nimbus.common.etcd import Etcd
from nimbus.internal.v1 import nodeagent_pb2

from tests.support import until
from tests.support.nodeagent import Agent, CodeServer, create, create_files, invoke, start_agent
from tests.support.runtimes import NODE_HANDLERS, RUNTIME_API_CLIENT

pytestmark = pytest.mark.timeout(90)

NODE_ESM = "export const handler = async (event) => ({ esm: true, event });\n"

PRINTS = """
import sys

def handler(event, context):
    for i in range(event.get("lines", 3)):
        print(f"line {i}")
        print(f"err {i}", file=sys.stderr)
    if event.get("big"):
        sys.stdout.write("x" * event["big"] + "\\n")
    return "done"
"""


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def agent(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> AsyncIterator[Agent]:
    a = await start_agent(
        tmp_path_factory.mktemp("runtimes"),
        etcd_endpoint,
        code_server[0],
        NIMBUS_WARM_POOL_SIZE="python3.11=1",
    )
    try:
        yield a
    finally:
        await a.stop()


async def node_fn(agent: Agent, code_server: tuple[str, CodeServer], handler: str) -> str:
    info = await create_files(
        agent,
        code_server,
        {"lib/handlers.js": NODE_HANDLERS},
        runtime="nodejs20",
        handler=f"lib/handlers.{handler}",
    )
    return info.instance_id


async def test_node_async_handler_and_context(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    iid = await node_fn(agent, code_server, "asyncHandler")
    reply = await invoke(agent, iid, {"k": [1, "two"]}, request_id="node-1")
    got = json.loads(reply.payload)
    assert reply.function_error == "" and reply.cold_start
    assert got["event"] == {"k": [1, "two"]} and got["requestId"] == "node-1" and got["same"]
    assert (got["name"], got["version"], got["memory"], got["greeting"]) == (
        "fn",
        "$LATEST",
        "128",
        "hi",
    )
    assert 0 < got["left"] <= 3000
    assert not (await invoke(agent, iid, {}, request_id="node-2")).cold_start


@pytest.mark.parametrize(
    ("handler", "event", "expected"),
    [
        ("syncHandler", {"n": 21}, {"sync": 42}),
        ("callbackHandler", {"n": 7}, {"cb": 7}),
        ("nested.deeper", {}, "nested ok"),
    ],
)
async def test_node_handler_styles(
    agent: Agent, code_server: tuple[str, CodeServer], handler: str, event: object, expected: object
) -> None:
    iid = await node_fn(agent, code_server, handler)
    reply = await invoke(agent, iid, event)
    assert reply.function_error == "" and json.loads(reply.payload) == expected


@pytest.mark.parametrize(
    ("handler", "error_type", "message"),
    [("throws", "RangeError", "out of range"), ("callbackError", "TypeError", "bad callback")],
)
async def test_node_errors(
    agent: Agent, code_server: tuple[str, CodeServer], handler: str, error_type: str, message: str
) -> None:
    iid = await node_fn(agent, code_server, handler)
    reply = await invoke(agent, iid, {})
    err = json.loads(reply.payload)
    assert reply.function_error == "Unhandled"
    assert (err["errorType"], err["errorMessage"]) == (error_type, message)
    assert any("handlers.js" in line for line in err["stackTrace"])
    assert (
        await invoke(agent, iid, {}, request_id="again")
    ).function_error == "Unhandled"  # still alive


async def test_node_unhandled_rejection_replaces_the_instance(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    iid = await node_fn(agent, code_server, "rejectsLater")
    err = json.loads((await invoke(agent, iid, {})).payload)
    assert (
        err["errorType"] == "Runtime.UnhandledPromiseRejection"
        and err["errorMessage"] == "nobody awaited me"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await invoke(agent, iid, {}, request_id="after")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_node_esm_module(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create_files(
        agent, code_server, {"index.mjs": NODE_ESM}, runtime="nodejs20", handler="index.handler"
    )
    assert json.loads((await invoke(agent, info.instance_id, {"a": 1})).payload) == {
        "esm": True,
        "event": {"a": 1},
    }


async def test_node_init_errors(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await node_fn(agent, code_server, "missing")
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "Runtime.HandlerNotFound" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create_files(
            agent,
            code_server,
            {"index.js": "this is not javascript"},
            runtime="nodejs20",
            handler="index.handler",
        )
    assert "Runtime.UserCodeSyntaxError" in info.value.details()


async def test_provided_runtime_api(agent: Agent, code_server: tuple[str, CodeServer]) -> None:
    info = await create_files(
        agent,
        code_server,
        {"bootstrap": RUNTIME_API_CLIENT},
        ("bootstrap",),
        runtime="provided",
        handler="my.handler",
    )
    before = time.time() * 1000
    reply = await invoke(agent, info.instance_id, {"hello": "runtime"}, request_id="rid-42")
    got = json.loads(reply.payload)
    assert reply.function_error == "" and reply.cold_start and reply.init_duration_us > 0
    assert got["event"] == {"hello": "runtime"} and got["request_id"] == "rid-42"
    assert before + 2000 < got["deadline_ms"] <= time.time() * 1000 + 3000
    assert got["arn"] == "arn:nimbus:lambda:local:default:function:fn"
    assert got["trace"].startswith("Root=1-")
    assert (got["handler"], got["greeting"], got["wrong_id_status"]) == ("my.handler", "hi", 400)
    assert got["task_root"] in (
        "/var/task",
        str(agent.home / "nodes" / agent.node_id / "code" / info.spec.code_sha256),
    )

    failed = await invoke(agent, info.instance_id, {"fail": True}, request_id="rid-43")
    assert failed.function_error == "Unhandled"
    assert json.loads(failed.payload) == {
        "errorType": "MyError",
        "errorMessage": "on purpose",
        "stackTrace": [],
    }

    died = await invoke(agent, info.instance_id, {"exit": True}, request_id="rid-44")
    err = json.loads(died.payload)
    assert (err["errorType"], err["errorMessage"]) == (
        "Runtime.ExitError",
        "RequestId: rid-44 Error: Runtime exited with error: exit status 7",
    )
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await invoke(agent, info.instance_id, {})
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("files", "env", "error"),
    [
        ({"bootstrap": RUNTIME_API_CLIENT}, {"MODE": "init_error"}, "Boom: cannot start"),
        ({"not-bootstrap": "x"}, {}, "Runtime.InvalidEntrypoint"),
        (
            {"bootstrap": "#!/bin/sh\nexit 3\n"},
            {},
            "Runtime.ExitError: Runtime exited with error: exit status 3",
        ),
    ],
)
async def test_provided_init_failures(
    agent: Agent,
    code_server: tuple[str, CodeServer],
    files: dict[str, str],
    env: dict[str, str],
    error: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await create_files(
            agent, code_server, files, ("bootstrap",), runtime="provided", handler="h", env=env
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error in info.value.details()


async def test_logs_are_tagged_ordered_and_tailed(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, PRINTS, name="printer")
    reply = await invoke(agent, info.instance_id, {"lines": 3}, request_id="log-1", log_tail=True)
    lines = reply.log_tail.decode().splitlines()
    assert lines[0] == "START RequestId: log-1 Version: $LATEST"
    # stdout and stderr are two pipes: each stream keeps its order, the two interleave as read.
    assert [x for x in lines[1:7] if x.startswith("line")] == ["line 0", "line 1", "line 2"]
    assert [x for x in lines[1:7] if x.startswith("err")] == ["err 0", "err 1", "err 2"]
    assert lines[7] == "END RequestId: log-1" and lines[8].startswith(
        "REPORT RequestId: log-1\tDuration: "
    )
    assert "Init Duration" in lines[8] and "\tMax Memory Used: " in lines[8]
    assert (await invoke(agent, info.instance_id, {"lines": 1}, request_id="log-2")).log_tail == b""

    big = await invoke(
        agent, info.instance_id, {"lines": 0, "big": 300 * 1024}, request_id="log-3", log_tail=True
    )
    tail = big.log_tail.decode()
    assert len(big.log_tail) <= 4096
    assert "[nimbus] output truncated: " in tail and "over the 256 KB limit were dropped" in tail
    assert tail.rstrip().splitlines()[-2] == "END RequestId: log-3"

    path = agent.home / "nodes" / agent.node_id / "logs" / f"{info.instance_id}.jsonl"

    async def flushed() -> bool:
        return (
            path.exists()
            and '"request_id": "log-3", "stream": "platform", "message": "REPORT'
            in path.read_text()
        )

    await until(flushed, 5, "the log records on disk")
    records = [json.loads(line) for line in path.read_text().splitlines()]

    def of(request_id: str, stream: str) -> list[str]:
        return [
            r["message"] for r in records if r["request_id"] == request_id and r["stream"] == stream
        ]

    assert of("log-1", "stdout") == ["line 0", "line 1", "line 2"] and of("log-1", "stderr") == [
        "err 0",
        "err 1",
        "err 2",
    ]
    assert of("log-2", "stdout") == ["line 0"] and of("log-2", "stderr") == ["err 0"]
    report = next(r["report"] for r in records if r["request_id"] == "log-1" and "report" in r)
    assert (
        report["cold_start"] is True
        and report["memory_mb"] > 0
        and report["max_memory_used_mb"] > 0
    )
    assert all(
        r["function"] == "printer" and r["version"] == "$LATEST" for r in records if r["request_id"]
    )
    kept = sum(
        len(r["message"])
        for r in records
        if r["request_id"] == "log-3" and r["stream"] in ("stdout", "stderr")
    )
    assert kept == 256 * 1024
    assert all(r["instance_id"] == info.instance_id and r["ts"].endswith("Z") for r in records)


async def test_node_and_provided_output_is_captured(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    iid = await node_fn(agent, code_server, "logs")
    tail = (
        (await invoke(agent, iid, {}, request_id="nl", log_tail=True))
        .log_tail.decode()
        .splitlines()
    )
    assert sorted(tail[1:4]) == ["err two", "out one", "out three"] and tail.index(
        "out one"
    ) < tail.index("out three")
    info = await create_files(
        agent,
        code_server,
        {"bootstrap": RUNTIME_API_CLIENT},
        ("bootstrap",),
        runtime="provided",
        handler="h",
    )
    tail = (
        (await invoke(agent, info.instance_id, {}, request_id="pl", log_tail=True))
        .log_tail.decode()
        .splitlines()
    )
    assert tail[1] == "handling pl"


async def test_cold_start_takes_a_warm_sandbox_and_the_pool_refills(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    run_dir = agent.home / "nodes" / agent.node_id / "run"

    def live_sandboxes() -> set[str]:
        return {p.stem for p in run_dir.glob("*.pid")}

    async def pooled() -> bool:
        return len(live_sandboxes()) > 0

    await until(pooled, 10, "a warm sandbox")
    before = live_sandboxes()
    info = await create(
        agent, code_server, "def handler(e, c):\n    return 'warm'\n", name="pooled"
    )
    assert info.instance_id in before  # the instance is the pooled sandbox, given its code
    assert json.loads((await invoke(agent, info.instance_id, {})).payload) == "warm"

    async def refilled() -> bool:
        return len(live_sandboxes() - before) >= 1

    await until(refilled, 10, "the pool to boot a replacement")
    await agent.stub.DestroyInstance(
        nodeagent_pb2.DestroyInstanceRequest(instance_id=info.instance_id), timeout=10
    )


async def test_instances_of_one_package_share_its_code(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    infos = await asyncio.gather(
        *(create(agent, code_server, "def handler(e, c):\n    return 1\n") for _ in range(3))
    )
    code_root = agent.home / "nodes" / agent.node_id / "code"
    assert len({i.spec.code_sha256 for i in infos}) == 1
    assert (code_root / infos[0].spec.code_sha256 / "app.py").exists()
    assert (code_root / infos[0].spec.code_sha256 / "__pycache__").is_dir()  # compiled once, here
    for info in infos:
        await agent.stub.DestroyInstance(
            nodeagent_pb2.DestroyInstanceRequest(instance_id=info.instance_id), timeout=10
        )
