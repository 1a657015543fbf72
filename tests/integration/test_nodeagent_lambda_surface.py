"""What Lambda code reads of its runtime (issue 24.1) and the errors in its log (24.2), in each
runtime, through a real node-agent (runc by default).

The context and environment Lambda gives (awslambdaric's LambdaContext, Node's context object,
AWS_LAMBDA_*, AWS_REGION, _HANDLER, ...) are set when the generic sandbox is given its function
(LOAD); an unhandled error, an init failure, a timeout and an out-of-memory each leave an ERROR
line with the error's type and message (and stack, where there is one) in the function's log.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import grpc
import pytest
from nimbus.internal.v1 import nodeagent_pb2, types_pb2
from nimbus.nodeagent.spec import account_id, function_arn

from tests.support import until
from tests.support.nodeagent import Agent, CodeServer, create, create_files, invoke

pytestmark = pytest.mark.timeout(90)

ENV_NAMES = [
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "_HANDLER",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
    "AWS_EXECUTION_ENV",
    "TZ",
    "GREETING",
]

PY_SURFACE = f"""
import logging, os
logging.getLogger().setLevel(logging.INFO)

def handler(event, context):
    logging.info("info from %s", "logging")
    return {{
        "aws_request_id": context.aws_request_id,
        "request_id": context.request_id,
        "arn": context.invoked_function_arn,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "memory_limit_mb": context.memory_limit_mb,
        "log_group_name": context.log_group_name,
        "log_stream_name": context.log_stream_name,
        "identity": [context.identity.cognito_identity_id,
                     context.identity.cognito_identity_pool_id],
        "client_context": context.client_context,
        "left": context.get_remaining_time_in_millis(),
        "left_ms": context.get_remaining_time_ms(),
        "env": {{k: os.environ.get(k) for k in {ENV_NAMES!r}}},
    }}
"""

NODE_SURFACE = f"""
const names = {json.dumps(ENV_NAMES)};
exports.handler = async (event, context) => ({{
  awsRequestId: context.awsRequestId,
  arn: context.invokedFunctionArn,
  functionName: context.functionName,
  functionVersion: context.functionVersion,
  memoryLimitInMB: context.memoryLimitInMB,
  logGroupName: context.logGroupName,
  logStreamName: context.logStreamName,
  left: context.getRemainingTimeInMillis(),
  waits: context.callbackWaitsForEmptyEventLoop,
  env: Object.fromEntries(names.map((k) => [k, process.env[k] ?? null])),
}});
exports.callback = (event, context, callback) => {{
  context.callbackWaitsForEmptyEventLoop = false;
  const waits = context.callbackWaitsForEmptyEventLoop;
  setTimeout(() => callback(null, {{ cb: event.n, waits }}), 5);
}};
exports.callbackError = (event, context, callback) => callback(new TypeError('bad callback'));
exports.succeed = (event, context) => {{ context.succeed({{ ok: 'succeed' }}); }};
exports.fail = (event, context) => {{ context.fail(new RangeError('failed on purpose')); }};
exports.done = (event, context) => {{ context.done(null, {{ ok: 'done' }}); }};
exports.throws = async () => {{ throw new RangeError('out of range'); }};
"""

PROVIDED_SURFACE = f"""#!/usr/bin/python3.11
import http.client, json, os
names = {ENV_NAMES!r} + ["AWS_LAMBDA_RUNTIME_API"]
conn = http.client.HTTPConnection(os.environ["AWS_LAMBDA_RUNTIME_API"])
while True:
    conn.request("GET", "/2018-06-01/runtime/invocation/next")
    res = conn.getresponse()
    res.read()
    rid = res.getheader("Lambda-Runtime-Aws-Request-Id")
    out = {{"env": {{k: os.environ.get(k) for k in names}},
           "arn": res.getheader("Lambda-Runtime-Invoked-Function-Arn")}}
    conn.request("POST", f"/2018-06-01/runtime/invocation/{{rid}}/response", json.dumps(out))
    conn.getresponse().read()
"""

PY_ERRORS = """
import time

def fail():
    raise ValueError("boom " + "here")

def handler(event, context):
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("hog"):
        blocks = []
        while True:
            blocks.append(b"x" * (16 * 1024 * 1024))
    fail()
"""

STREAM = re.compile(r"^\d{4}/\d{2}/\d{2}/\[(?P<version>[^\]]+)\](?P<instance>[0-9a-f]+)$")


def surface_env(name: str, handler: str, execution_env: str | None, memory: str = "128") -> dict:
    return {
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory,
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "_HANDLER": handler,
        "LAMBDA_RUNTIME_DIR": "/var/runtime",
        "AWS_EXECUTION_ENV": execution_env,
        "TZ": ":UTC",
        "GREETING": "hi",
    }


def check_env(env: dict, expected: dict, instance_id: str) -> None:
    stream = env.pop("AWS_LAMBDA_LOG_STREAM_NAME")
    m = STREAM.match(stream)
    assert m and (m["version"], m["instance"]) == ("$LATEST", instance_id), stream
    task_root = env.pop("LAMBDA_TASK_ROOT")
    assert task_root == "/var/task" or "/code" in task_root
    assert {k: env[k] for k in expected} == expected


def check_arn(arn: str, namespace: str, name: str, qualifier: str = "") -> None:
    assert arn == function_arn("us-east-1", namespace, name, qualifier)
    parts = arn.split(":")
    assert parts[:4] == ["arn", "aws", "lambda", "us-east-1"]
    assert re.fullmatch(r"\d{12}", parts[4]) and parts[4] == account_id(namespace)
    assert parts[5:7] == ["function", name]
    assert parts[7:] == ([qualifier] if qualifier else [])


async def test_python_context_and_environment(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, PY_SURFACE, name="pysurface")
    reply = await invoke(agent, info.instance_id, {}, request_id="py-1", log_tail=True)
    assert reply.function_error == "", reply.payload
    got = json.loads(reply.payload)
    assert (got["aws_request_id"], got["request_id"]) == ("py-1", "py-1")
    check_arn(got["arn"], "default", "pysurface")
    assert (got["function_name"], got["function_version"]) == ("pysurface", "$LATEST")
    # A string, as awslambdaric gives it; Nimbus' own name keeps its int.
    assert (got["memory_limit_in_mb"], got["memory_limit_mb"]) == ("128", 128)
    assert got["log_group_name"] == "/aws/lambda/pysurface"
    assert got["log_stream_name"] == got["env"]["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert got["identity"] == [None, None] and got["client_context"] is None
    assert 0 < got["left"] <= 3000 and 0 < got["left_ms"] <= 3000
    expected = surface_env("pysurface", "app.handler", "AWS_Lambda_python3.11")
    check_env(got["env"], expected, info.instance_id)
    # logging's root logger writes as on Lambda: [LEVEL] TIMESTAMP REQUEST_ID message.
    tail = reply.log_tail.decode()
    assert re.search(r"^\[INFO\]\t\d{4}-\d\d-\d\dT[\d:.]+Z\tpy-1\tinfo from logging$", tail, re.M)


async def test_a_published_version_is_in_the_arn(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    sha = code_server[1].add({"app.py": PY_SURFACE})
    spec = types_pb2.InstanceSpec(
        namespace="team-a",
        function="versioned",
        version="4",
        code_sha256=sha,
        function_revision=1,
        config=types_pb2.FunctionConfig(
            runtime="python3.11", handler="app.handler", memory_mb=256, timeout_s=3
        ),
    )
    info = await agent.stub.CreateInstance(
        nodeagent_pb2.CreateInstanceRequest(spec=spec), timeout=20
    )
    got = json.loads((await invoke(agent, info.instance_id, {})).payload)
    check_arn(got["arn"], "team-a", "versioned", "4")
    assert account_id("team-a") != account_id("default")
    assert got["env"]["AWS_LAMBDA_FUNCTION_VERSION"] == "4"
    assert got["env"]["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] == "256"
    assert got["memory_limit_in_mb"] == "256"
    assert STREAM.match(got["log_stream_name"])["version"] == "4"  # type: ignore[index]


async def test_node_context_environment_and_callback_styles(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    files = {"index.js": NODE_SURFACE}
    info = await create_files(
        agent, code_server, files, runtime="nodejs20", handler="index.handler"
    )
    got = json.loads((await invoke(agent, info.instance_id, {}, request_id="n-1")).payload)
    assert got["awsRequestId"] == "n-1"
    check_arn(got["arn"], "default", "fn")
    assert (got["functionName"], got["functionVersion"], got["memoryLimitInMB"]) == (
        "fn",
        "$LATEST",
        "128",
    )
    assert got["logGroupName"] == "/aws/lambda/fn"
    assert got["logStreamName"] == got["env"]["AWS_LAMBDA_LOG_STREAM_NAME"]
    assert 0 < got["left"] <= 3000 and got["waits"] is True
    check_env(
        got["env"], surface_env("fn", "index.handler", "AWS_Lambda_nodejs20.x"), info.instance_id
    )

    async def call(handler: str, event: object = None) -> tuple[str, object]:
        i = await create_files(agent, code_server, files, runtime="nodejs20", handler=handler)
        reply = await invoke(agent, i.instance_id, event or {}, request_id=f"{handler}-1")
        return reply.function_error, json.loads(reply.payload)

    assert await call("index.callback", {"n": 5}) == ("", {"cb": 5, "waits": False})
    assert await call("index.succeed") == ("", {"ok": "succeed"})
    assert await call("index.done") == ("", {"ok": "done"})
    error, body = await call("index.fail")
    assert error == "Unhandled" and body["errorType"] == "RangeError"  # type: ignore[index]
    error, body = await call("index.callbackError")
    assert error == "Unhandled" and body["errorMessage"] == "bad callback"  # type: ignore[index]


async def test_provided_gets_the_same_environment(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    info = await create_files(
        agent,
        code_server,
        {"bootstrap": PROVIDED_SURFACE},
        ("bootstrap",),
        runtime="provided",
        handler="my.handler",
    )
    got = json.loads((await invoke(agent, info.instance_id, {})).payload)
    check_arn(got["arn"], "default", "fn")
    env = got["env"]
    assert env.pop("AWS_LAMBDA_RUNTIME_API").startswith("127.0.0.1:")
    # As on Lambda, a custom runtime gets no AWS_EXECUTION_ENV.
    check_env(env, surface_env("fn", "my.handler", None), info.instance_id)


async def test_python_unhandled_error_timeout_and_oom_are_logged(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    info = await create(agent, code_server, PY_ERRORS, name="pyerrors", timeout_s=1)
    reply = await invoke(agent, info.instance_id, {}, request_id="e-1", log_tail=True)
    assert reply.function_error == "Unhandled"
    lines = reply.log_tail.decode().splitlines()
    at = lines.index("[ERROR] ValueError: boom here")
    assert lines[at + 1] == "Traceback (most recent call last):"
    assert 'app.py", line 5, in fail' in "\n".join(lines[at + 2 :])
    assert lines[-2] == "END RequestId: e-1"

    timed_out = await invoke(agent, info.instance_id, {"sleep": 5}, request_id="e-2", log_tail=True)
    tail = timed_out.log_tail.decode()
    assert "RequestId: e-2 Error: Timeout: Task timed out after 1.00 seconds\n" in tail

    info = await create(agent, code_server, PY_ERRORS, name="pyerrors", timeout_s=20)
    hog = await invoke(agent, info.instance_id, {"hog": True}, request_id="e-3", log_tail=True)
    assert json.loads(hog.payload)["errorType"] == "OutOfMemory"
    assert (
        "RequestId: e-3 Error: OutOfMemory: Runtime exited with error: signal: killed\n"
        in hog.log_tail.decode()
    )


async def test_node_unhandled_error_is_logged_as_lambda_does(
    agent: Agent, code_server: tuple[str, CodeServer]
) -> None:
    info = await create_files(
        agent, code_server, {"index.js": NODE_SURFACE}, runtime="nodejs20", handler="index.throws"
    )
    reply = await invoke(agent, info.instance_id, {}, request_id="ne-1", log_tail=True)
    assert reply.function_error == "Unhandled"
    line = next(x for x in reply.log_tail.decode().splitlines() if "\tERROR\t" in x)
    ts, request_id, level, label, body = line.split("\t")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", ts)
    assert (request_id, level, label) == ("ne-1", "ERROR", "Invoke Error ")
    err = json.loads(body)
    assert (err["errorType"], err["errorMessage"]) == ("RangeError", "out of range")
    assert err["stack"][0] == "RangeError: out of range" and "index.js" in err["stack"][1]


def function_records(agent: Agent, name: str) -> list[dict]:
    logs = agent.home / "nodes" / agent.node_id / "logs"
    return [
        r
        for path in sorted(Path(logs).glob("*.jsonl"))
        for r in map(json.loads, path.read_text().splitlines())
        if r.get("function") == name
    ]


@pytest.mark.parametrize(
    ("runtime", "files", "handler", "wanted"),
    [
        (
            "python3.11",
            {"app.py": "import no_such_module\n"},
            "app.handler",
            "[ERROR] Runtime.ImportModuleError: Unable to import module 'app': "
            "No module named 'no_such_module'",
        ),
        (
            "python3.11",
            {"app.py": "def f():\n    raise KeyError('at import')\nf()\n"},
            "app.handler",
            "[ERROR] KeyError: 'at import'",
        ),
        ("nodejs20", {"index.js": "throw new Error('init boom');\n"}, "index.handler", "init boom"),
        (
            "python3.11",
            {"app.py": "import sys\nsys.exit(4)\n"},
            "app.handler",
            "[nimbus] ERROR Init failed: Runtime.ExitError: ",
        ),
        (
            "python3.11",
            {"app.py": "blocks = [bytearray(16 << 20) for _ in range(32)]\n"},
            "app.handler",
            "[nimbus] ERROR Init failed: OutOfMemory: init used more than 128 MB of memory",
        ),
    ],
)
async def test_init_failures_are_logged(
    agent: Agent,
    code_server: tuple[str, CodeServer],
    runtime: str,
    files: dict[str, str],
    handler: str,
    wanted: str,
) -> None:
    name = f"init-{runtime[:4]}-{abs(hash(wanted)) % 10**6}"
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await create_files(agent, code_server, files, runtime=runtime, handler=handler, name=name)
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    async def logged() -> bool:
        return any(wanted in r["message"] for r in function_records(agent, name))

    await until(logged, 5, f"{wanted!r} in the function's log")
    records = function_records(agent, name)
    if runtime == "nodejs20":
        line = next(r["message"] for r in records if wanted in r["message"])
        _, request_id, level, label, body = line.split("\t")
        assert (request_id, level, label) == ("undefined", "ERROR", "Uncaught Exception ")
        assert json.loads(body)["errorMessage"] == "init boom"
    elif wanted.startswith("[ERROR]"):
        messages = [r["message"] for r in records]
        at = next(i for i, m in enumerate(messages) if m.startswith(wanted))
        assert messages[at + 1] == "Traceback (most recent call last):"
        assert records[at]["stream"] == "stderr"
    else:
        assert next(r for r in records if wanted in r["message"])["stream"] == "platform"
