"""The foundation end to end: deploy, invoke by REST and by gRPC through Envoy, and every error."""

from __future__ import annotations

import base64
import json
import uuid

import grpc
import pytest
from google.api import httpbody_pb2
from nimbus.api.v1 import invocations_pb2, invocations_pb2_grpc
from support import zip_of

pytestmark = pytest.mark.asyncio(loop_scope="session")

ECHO = {
    "main.py": (
        "def handler(event, context):\n"
        "    return {'echo': event, 'rid': context.request_id, 'fn': context.function_name}\n"
    )
}
RAISES = {
    "main.py": "def handler(event, context):\n    raise ValueError('bad input: ' + str(event))\n"
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_deploy_and_invoke_by_rest(gw):
    name = unique("echo")
    created = gw.create(name, ECHO)
    assert created.status == 200, created.body
    fn = created.json()
    assert (
        fn["name"] == name
        and fn["runtime"] == "python3.11"
        and fn["memory_mb"] == 128
        and fn["timeout_s"] == 3
    )
    assert len(fn["code_sha256"]) == 64

    first = gw.invoke(name, {"n": 1})
    assert first.status == 200, first.body
    assert first.json()["echo"] == {"n": 1}
    assert first.json()["fn"] == name
    assert first.json()["rid"] == first.headers["x-nimbus-request-id"]
    assert first.headers["x-nimbus-cold-start"] == "true"
    assert int(first.headers["x-nimbus-billed-ms"]) >= 1
    assert "x-nimbus-function-error" not in first.headers
    assert first.headers["content-type"].startswith("application/json")

    second = gw.invoke(name, [1, "two", None])
    assert second.status == 200
    assert second.json()["echo"] == [1, "two", None]
    # The other invoker replica may not have seen the new instance yet and start its own; by the
    # third call both know an instance.
    third = gw.invoke(name, {})
    assert "false" in (second.headers["x-nimbus-cold-start"], third.headers["x-nimbus-cold-start"])


async def test_invoke_by_grpc_through_the_gateway(gw):
    name = unique("grpc")
    assert gw.create(name, ECHO).status == 200
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        stub = invocations_pb2_grpc.InvocationsStub(channel)
        call = stub.Invoke(
            invocations_pb2.InvokeRequest(
                name=name,
                body=httpbody_pb2.HttpBody(content_type="application/json", data=b'{"g": 2}'),
            ),
            metadata=(("authorization", f"Bearer {gw.api_key}"),),
            timeout=30,
        )
        reply = await call
        metadata = dict(await call.initial_metadata())
    assert json.loads(reply.data)["echo"] == {"g": 2}
    assert metadata["x-nimbus-request-id"]
    assert metadata["x-nimbus-cold-start"] in ("true", "false")


async def test_function_error_is_a_200_with_the_error_header(gw):
    name = unique("raises")
    assert gw.create(name, RAISES).status == 200
    res = gw.invoke(name, {"x": 1})
    assert res.status == 200
    assert res.headers["x-nimbus-function-error"] == "Unhandled"
    err = res.json()
    assert err["errorType"] == "ValueError"
    assert "bad input" in err["errorMessage"]
    assert isinstance(err["stackTrace"], list) and any(
        "main.py" in line for line in err["stackTrace"]
    )


async def test_unknown_function_is_404(gw):
    res = gw.invoke(unique("nope"), {})
    assert res.status == 404
    assert "not found" in res.json()["message"]
    assert gw.request("GET", f"/v1/functions/{unique('nope')}").status == 404


@pytest.mark.parametrize("key", [None, "nmb_not-a-real-key"])
async def test_missing_or_bad_key_is_401(gw, key):
    for res in (gw.request("GET", "/v1/functions", key=key), gw.invoke("anything", {}, key=key)):
        assert res.status == 401, res.body
        assert res.json()["message"]


@pytest.mark.parametrize(
    "override, field",
    [
        ({"name": "1-starts-with-digit"}, "name"),
        ({"runtime": "cobol"}, "runtime"),
        ({"handler": "nodots"}, "handler"),
        ({"memory_mb": 64}, "memory_mb"),
        ({"memory_mb": 20000}, "memory_mb"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"timeout_s": 901}, "timeout_s"),
    ],
)
async def test_invalid_fields_are_400_naming_the_field(gw, override, field):
    body = {
        "name": unique("bad"),
        "runtime": "python3.11",
        "handler": "main.handler",
        "code": {"zip_base64": "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="},
    }
    body.update(override)
    res = gw.request("POST", "/v1/functions", body)
    assert res.status == 400, res.body
    assert res.json()["message"].startswith(f"{field}: "), res.json()


async def test_unknown_json_field_is_400(gw):
    res = gw.request("POST", "/v1/functions", {"name": unique("x"), "memroy_mb": 256})
    assert res.status == 400


async def test_duplicate_is_409(gw):
    name = unique("dup")
    assert gw.create(name, ECHO).status == 200
    res = gw.create(name, ECHO)
    assert res.status == 409
    assert "already exists" in res.json()["message"]


async def test_list_get_update_delete(gw):
    name = unique("crud")
    assert gw.create(name, ECHO, memory_mb=256, env={"GREETING": "hi"}).status == 200
    names = [f["name"] for f in gw.request("GET", "/v1/functions").json()["functions"]]
    assert name in names
    got = gw.request("GET", f"/v1/functions/{name}").json()
    assert got["memory_mb"] == 256 and got["env"] == {"GREETING": "hi"}
    patched = gw.request("PATCH", f"/v1/functions/{name}", {"timeout_s": 10})
    assert (
        patched.status == 200
        and patched.json()["timeout_s"] == 10
        and patched.json()["memory_mb"] == 256
    )
    assert gw.request("DELETE", f"/v1/functions/{name}").status == 200
    assert gw.request("GET", f"/v1/functions/{name}").status == 404


async def test_new_code_runs_after_an_update(gw):
    name = unique("upd")
    assert gw.create(name, {"main.py": "def handler(e, c):\n    return 'v1'\n"}).status == 200
    assert gw.invoke(name, {}).json() == "v1"
    code = base64.b64encode(zip_of({"main.py": "def handler(e, c):\n    return 'v2'\n"})).decode()
    res = gw.request("PUT", f"/v1/functions/{name}/code", {"code": {"zip_base64": code}})
    assert res.status == 200, res.body
    assert gw.invoke(name, {}).json() == "v2"


async def test_env_reaches_the_function(gw):
    name = unique("env")
    files = {"main.py": "import os\ndef handler(e, c):\n    return os.environ.get('GREETING')\n"}
    assert gw.create(name, files, env={"GREETING": "hello"}).status == 200
    assert gw.invoke(name, {}).json() == "hello"


async def test_namespaces_see_nothing_of_each_other(gw):
    name = unique("private")
    assert gw.create(name, ECHO).status == 200
    issued = gw.request(
        "POST", "/v1/keys", {"namespace": unique("tenant").lower(), "description": "test"}
    )
    assert issued.status == 200, issued.body
    other = issued.json()["api_key"]
    assert gw.request("GET", "/v1/functions", key=other).json()["functions"] == []
    assert gw.invoke(name, {}, key=other).status == 404
    assert gw.request("GET", f"/v1/functions/{name}", key=other).status == 404
    assert gw.request("POST", "/v1/keys", {"namespace": "default"}, key=other).status == 403


async def test_code_that_cannot_load_is_a_function_error(gw):
    name = unique("broken")
    assert (
        gw.create(
            name, {"main.py": "import no_such_module\ndef handler(e, c):\n    return 1\n"}
        ).status
        == 200
    )
    res = gw.invoke(name, {})
    assert res.status == 200, res.body
    assert res.headers["x-nimbus-function-error"] == "Unhandled"
    assert res.json()["errorType"] == "Runtime.ImportModuleError"  # as Lambda names it
    assert "no_such_module" in res.json()["errorMessage"]


async def test_event_is_json_whatever_the_content_type(gw):
    import http.client

    name = unique("ctype")
    assert gw.create(name, ECHO).status == 200
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        # What `curl -d '{...}'` sends: a form content type around a JSON body.
        conn.request(
            "POST",
            f"/v1/functions/{name}:invoke",
            body=b'{"curl": true}',
            headers={
                "Authorization": f"Bearer {gw.api_key}",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        res = conn.getresponse()
        assert res.status == 200 and json.loads(res.read())["echo"] == {"curl": True}
    finally:
        conn.close()
    assert gw.invoke(name, None, raw=b"").json()["echo"] == {}
    bad = gw.request("POST", f"/v1/functions/{name}:invoke", raw=b"name=Ada")
    assert bad.status == 400 and bad.json()["message"].startswith("body: ")


async def test_log_tail_on_request(gw):
    name = unique("logs")
    files = {
        "main.py": (
            "def handler(event, context):\n"
            "    print('hello from', context.request_id)\n"
            "    return 1\n"
        )
    }
    assert gw.create(name, files).status == 200
    res = gw.request("POST", f"/v1/functions/{name}:invoke?log=tail", raw=b"{}")
    assert res.status == 200, res.body
    tail = base64.b64decode(res.headers["x-nimbus-log-tail"]).decode()
    assert f"hello from {res.headers['x-nimbus-request-id']}" in tail
    assert "x-nimbus-log-tail" not in gw.invoke(name, {}).headers
    assert (
        gw.request("POST", f"/v1/functions/{name}:invoke?log=everything", raw=b"{}").status == 400
    )
