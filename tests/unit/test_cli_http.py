"""The SDK and CLI against a tiny stdlib HTTP server on 127.0.0.1 that answers like the gateway.

No cluster: the fake speaks the public REST contract (proto3 JSON with snake_case names, int64 as
strings, zero values left out, errors as {"code", "message", "details"} with the matching status,
invoke metadata in x-nimbus-* headers) so the HTTP client is tested end to end on a real socket.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from nimbus.cli.main import main
from nimbus.client import (
    Client,
    FunctionError,
    NimbusApiError,
    NimbusConnectionError,
    zip_directory,
)
from nimbus.client.transport import _HTTPConnection

from tests.support import free_port
from tests.support.fakegateway import API_KEY, GatewayState


@pytest.fixture
def client(gateway: tuple[str, GatewayState]) -> Iterator[Client]:
    with Client(endpoint=gateway[0], api_key=API_KEY, timeout_s=5, env={}, cwd=Path("/")) as c:
        yield c


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    (d / "main.py").write_text("def handler(event, context):\n    return event\n")
    return d


# -- SDK ----------------------------------------------------------------------------------------


def test_create_function_body_and_headers(
    client: Client, gateway: tuple[str, GatewayState]
) -> None:
    fn = client.create_function("hello", "python3.11", "main.handler", b"PK-zip", memory_mb=256)
    assert fn["name"] == "hello" and fn["memory_mb"] == 256
    seen = gateway[1].seen[-1]
    assert (seen.method, seen.path) == ("POST", "/v1/functions")
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.headers["content-type"] == "application/json"
    body = json.loads(seen.body)
    # Unset optional fields are left out, so the server applies its defaults.
    assert set(body) == {"name", "runtime", "handler", "code", "memory_mb"}
    assert base64.b64decode(body["code"]["zip_base64"]) == b"PK-zip"


def test_crud_round_trip(client: Client, gateway: tuple[str, GatewayState]) -> None:
    assert client.list_functions() == []
    client.create_function("hello", "python3.11", "main.handler", b"zip1", env={"A": "1"})
    updated = client.update_function("hello", memory_mb=512, env={"B": "2"}, description=None)
    assert updated["memory_mb"] == 512 and updated["env"] == {"A": "1", "B": "2"}
    patch = gateway[1].seen[-1]
    assert (patch.method, json.loads(patch.body)) == (
        "PATCH",
        {"memory_mb": 512, "env": {"B": "2"}},
    )
    code = client.update_code("hello", b"zip2")
    assert code["code_sha256"] == hashlib.sha256(b"zip2").hexdigest()
    assert gateway[1].seen[-1].path == "/v1/functions/hello/code"
    assert [f["name"] for f in client.list_functions()] == ["hello"]
    assert client.get_function("hello")["revision"] == "3"
    assert client.delete_function("hello") == {}
    with pytest.raises(NimbusApiError) as exc:
        client.get_function("hello")
    assert (exc.value.status, exc.value.code, exc.value.message) == (
        404,
        5,
        "function hello not found",
    )


def test_invoke_parses_headers(client: Client, gateway: tuple[str, GatewayState]) -> None:
    client.create_function("echo", "python3.11", "main.handler", b"zip")
    result = client.invoke("echo", {"x": [1, "ü"]}, qualifier="prod")
    assert result.status == 200 and result.ok
    assert result.payload == {"echo": {"x": [1, "ü"]}}
    assert json.loads(result.raw) == result.payload
    assert (result.request_id, result.cold_start, result.billed_ms) == ("req-123", True, 7)
    assert result.executed_version == "prod" and result.function_error is None
    seen = gateway[1].seen[-1]
    assert seen.path == "/v1/functions/echo:invoke?qualifier=prod"
    assert seen.headers["content-type"] == "application/json"
    assert json.loads(seen.body) == {"x": [1, "ü"]}


def test_invoke_event_forms(client: Client, gateway: tuple[str, GatewayState]) -> None:
    client.create_function("echo", "python3.11", "main.handler", b"zip")
    assert client.invoke("echo").payload == {"echo": {}}
    assert gateway[1].seen[-1].path == "/v1/functions/echo:invoke"
    assert client.invoke("echo", b'{"raw": true}').payload == {"echo": {"raw": True}}
    assert client.invoke("echo", None).payload == {"echo": None}


def test_invoke_function_error_is_a_result(client: Client) -> None:
    client.create_function("bad", "python3.11", "main.fails", b"zip")
    result = client.invoke("bad", {})
    assert result.function_error == "Unhandled" and not result.ok
    assert result.payload["errorType"] == "ZeroDivisionError"
    with pytest.raises(FunctionError, match="ZeroDivisionError: division by zero"):
        result.raise_for_function_error()


def test_invoke_missing_function_raises(client: Client) -> None:
    with pytest.raises(NimbusApiError) as exc:
        client.invoke("nope", {})
    assert exc.value.status == 404 and exc.value.code_name == "NOT_FOUND"


def test_error_json_becomes_api_error(client: Client) -> None:
    client.create_function("hello", "python3.11", "main.handler", b"zip")
    with pytest.raises(NimbusApiError) as exc:
        client.create_function("hello", "python3.11", "main.handler", b"zip")
    assert (exc.value.status, exc.value.code, exc.value.message) == (
        409,
        6,
        "function hello already exists",
    )
    assert str(exc.value) == "function hello already exists (HTTP 409)"


def test_non_json_error(client: Client) -> None:
    with pytest.raises(NimbusApiError) as exc:
        client.request("GET", "/v1/plain-503")
    assert (exc.value.status, exc.value.code, exc.value.message) == (503, 14, "no healthy upstream")


def test_bad_key_is_401(gateway: tuple[str, GatewayState]) -> None:
    with (
        Client(endpoint=gateway[0], api_key="wrong", env={}, cwd=Path("/")) as c,
        pytest.raises(NimbusApiError) as exc,
    ):
        c.list_functions()
    assert (exc.value.status, exc.value.code) == (401, 16)


def test_keep_alive_and_nodelay(client: Client, gateway: tuple[str, GatewayState]) -> None:
    for _ in range(3):
        client.list_functions()
    assert len({s.port for s in gateway[1].seen}) == 1
    sock = client._transport._conn.sock  # type: ignore[union-attr]
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_reconnects_after_server_closes_idle_connection(
    client: Client, gateway: tuple[str, GatewayState]
) -> None:
    gateway[1].close_after_response = True
    for _ in range(3):
        assert client.list_functions() == []
    assert len({s.port for s in gateway[1].seen}) == 3


def test_headers_and_body_in_one_write() -> None:
    class FakeSock:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def sendall(self, data: bytes) -> None:
            self.writes.append(bytes(data))

    conn = _HTTPConnection("127.0.0.1", 1)
    conn.sock = FakeSock()  # type: ignore[assignment]
    conn.putrequest("POST", "/v1/functions/f:invoke", skip_accept_encoding=True)
    conn.putheader("Content-Length", "9")
    conn._pending_body = b'{"a": 1}\n'
    conn.endheaders()
    assert len(conn.sock.writes) == 1  # type: ignore[attr-defined]
    assert conn.sock.writes[0].endswith(b'\r\n\r\n{"a": 1}\n')  # type: ignore[attr-defined]


def test_connection_refused_names_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    with (
        Client(endpoint=endpoint, api_key="k", env={}, cwd=Path("/")) as c,
        pytest.raises(NimbusConnectionError) as exc,
    ):
        c.list_functions()
    assert exc.value.refused and endpoint in str(exc.value)


def test_timeout_is_a_connection_error() -> None:
    with socket.socket() as listener:  # accepts (via the backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        endpoint = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with (
            Client(endpoint=endpoint, api_key="k", timeout_s=0.1, env={}, cwd=Path("/")) as c,
            pytest.raises(NimbusConnectionError, match="no answer within 0.1 s"),
        ):
            c.list_functions()


def test_versions_aliases_keys_routes(client: Client, gateway: tuple[str, GatewayState]) -> None:
    state = gateway[1]
    client.create_function("f", "python3.11", "main.handler", b"zip")
    v1 = client.publish_version("f", description="first")
    assert v1["version"] == "1" and state.paths()[-1] == "POST /v1/functions/f/versions"
    assert json.loads(state.seen[-1].body) == {"description": "first"}
    client.publish_version("f", expected_revision=7)
    assert json.loads(state.seen[-1].body) == {"expected_revision": 7}
    assert [v["version"] for v in client.list_versions("f")] == ["1", "2"]
    assert (
        client.get_version("f", 2)["version"] == "2"
        and state.paths()[-1] == "GET /v1/functions/f/versions/2"
    )

    a = client.put_alias("f", "prod", 1, routing_version=2, routing_weight=0.1)
    put = state.seen[-1]
    assert (put.method, put.path) == ("PUT", "/v1/functions/f/aliases/prod")
    assert json.loads(put.body) == {"version": "1", "routing": {"version": "2", "weight": 0.1}}
    assert a["routing"] == {"version": "2", "weight": 0.1}
    assert [x["alias"] for x in client.list_aliases("f")] == ["prod"]
    assert state.paths()[-1] == "GET /v1/functions/f/aliases"
    with pytest.raises(NimbusApiError) as exc:
        client.delete_version("f", "1")
    assert exc.value.status == 409
    assert client.delete_alias("f", "prod") == {} and client.delete_version("f", "1") == {}
    assert state.paths()[-1] == "DELETE /v1/functions/f/versions/1"

    key = client.create_key(namespace="team-a", description="ci")
    assert json.loads(state.seen[-1].body) == {"namespace": "team-a", "description": "ci"}
    assert key["api_key"] == "nmb_k1_secret"
    client.create_key(admin=True)
    assert json.loads(state.seen[-1].body) == {"admin": True}
    assert [k["key_id"] for k in client.list_keys()] == ["k1", "k2"]
    assert client.revoke_key("k1") == {} and state.paths()[-1] == "DELETE /v1/keys/k1"
    assert [k["key_id"] for k in client.list_keys()] == ["k2"]


def test_alias_and_key_ids_are_path_escaped(
    client: Client, gateway: tuple[str, GatewayState]
) -> None:
    with pytest.raises(NimbusApiError):
        client.revoke_key("a/b c")
    assert gateway[1].seen[-1].path == "/v1/keys/a%2Fb%20c"


# -- CLI ----------------------------------------------------------------------------------------


def run(gateway: tuple[str, GatewayState], *argv: str, stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["--endpoint", gateway[0], "--api-key", API_KEY, *argv],
        env={},
        cwd=Path("/"),
        stdin=io.BytesIO(stdin),
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_cli_deploy_create_then_update(gateway: tuple[str, GatewayState], src: Path) -> None:
    state = gateway[1]
    code, out, err = run(
        gateway,
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
        "--env",
        "A=1",
    )
    assert (code, err) == (0, "")
    sha = hashlib.sha256(zip_directory(src)).hexdigest()
    assert out.splitlines()[0] == "created function hello"
    assert (
        "python3.11" in out
        and "main.handler" in out
        and "128 MB" in out
        and "3 s" in out
        and sha in out
    )
    assert state.paths() == ["GET /v1/functions/hello", "POST /v1/functions"]

    # Same code, new memory: only a PATCH with what was given; the code is not uploaded again.
    state.seen.clear()
    code, out, _ = run(gateway, "deploy", "hello", "--src", str(src), "--memory", "256")
    assert code == 0
    assert out.splitlines()[0] == "updated function hello (same code, not uploaded)"
    assert state.paths() == ["GET /v1/functions/hello", "PATCH /v1/functions/hello"]
    assert json.loads(state.seen[-1].body) == {"memory_mb": 256}

    # New code: PUT code.
    state.seen.clear()
    (src / "main.py").write_text("def handler(event, context):\n    return 2\n")
    code, out, _ = run(gateway, "deploy", "hello", "--src", str(src))
    assert code == 0 and out.splitlines()[0] == "updated function hello"
    assert state.paths() == ["GET /v1/functions/hello", "PUT /v1/functions/hello/code"]
    assert state.functions["hello"]["code_sha256"] == hashlib.sha256(zip_directory(src)).hexdigest()

    code, out, _ = run(gateway, "deploy", "hello", "--src", str(src))
    assert out.splitlines()[0] == "function hello is up to date (same code, not uploaded)"


def test_cli_deploy_json(gateway: tuple[str, GatewayState], src: Path) -> None:
    code, out, _ = run(
        gateway,
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
        "--json",
    )
    assert code == 0 and json.loads(out) == gateway[1].functions["hello"]


def test_cli_deploy_create_race_falls_back_to_update(
    gateway: tuple[str, GatewayState], src: Path
) -> None:
    state = gateway[1]
    state.functions["hello"] = {
        "name": "hello",
        "runtime": "python3.11",
        "handler": "main.handler",
        "code_sha256": "old",
        "revision": "1",
    }
    state.hide_from_get.add("hello")
    code, out, err = run(
        gateway,
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
    )
    assert code == 1  # the fallback GET is hidden too, so the 404 surfaces
    assert "function hello not found (HTTP 404)" in err
    state.hide_from_get.clear()
    code, out, err = run(
        gateway,
        "deploy",
        "hello",
        "--runtime",
        "python3.11",
        "--handler",
        "main.handler",
        "--src",
        str(src),
    )
    assert code == 0, err
    assert out.startswith("updated function hello")


def test_cli_deploy_new_function_needs_runtime(
    gateway: tuple[str, GatewayState], src: Path
) -> None:
    code, _, err = run(gateway, "deploy", "hello", "--src", str(src))
    assert code == 2 and "--runtime and --handler are needed" in err


def test_cli_invoke(gateway: tuple[str, GatewayState], src: Path, tmp_path: Path) -> None:
    gateway[1].functions["echo"] = {"name": "echo", "handler": "main.handler", "revision": "1"}
    code, out, err = run(gateway, "invoke", "echo", "--data", '{"a": 1}')
    assert (code, out, err) == (0, '{"echo":{"a":1}}\n', "")  # compact when not a terminal
    event = tmp_path / "event.json"
    event.write_text('{"from": "file"}')
    code, out, err = run(gateway, "invoke", "echo", "--data", f"@{event}", "-v", "-q", "2")
    assert (code, json.loads(out)) == (0, {"echo": {"from": "file"}})
    assert "request id: req-123" in err and "cold start: yes" in err and "billed: 7 ms" in err
    assert "version: 2" in err
    code, out, _ = run(gateway, "invoke", "echo", "--data", "-", stdin=b"[1, 2]")
    assert json.loads(out) == {"echo": [1, 2]}


def test_cli_invoke_function_error(gateway: tuple[str, GatewayState]) -> None:
    gateway[1].functions["bad"] = {"name": "bad", "handler": "main.fails", "revision": "1"}
    code, out, err = run(gateway, "invoke", "bad")
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert lines[0] == "ZeroDivisionError: division by zero"
    assert any("in fails" in line for line in lines) and any(
        "return 1 / 0" in line for line in lines
    )


def test_cli_fn_commands(gateway: tuple[str, GatewayState]) -> None:
    code, out, _ = run(gateway, "fn", "list")
    assert code == 0 and "no functions" in out
    gateway[1].functions["hello"] = {
        "name": "hello",
        "runtime": "python3.11",
        "handler": "main.handler",
        "memory_mb": 128,
        "timeout_s": 3,
        "code_size": "10",
        "revision": "1",
    }
    code, out, _ = run(gateway, "fn", "list")
    assert code == 0 and out.splitlines()[0].startswith("NAME") and "hello" in out.splitlines()[1]
    code, out, _ = run(gateway, "--json", "fn", "list")
    assert json.loads(out) == {"functions": [gateway[1].functions["hello"]]}
    code, out, _ = run(gateway, "fn", "get", "hello")
    assert code == 0 and "function hello" in out and "128 MB" in out
    code, out, _ = run(gateway, "fn", "delete", "hello")
    assert code == 0 and out == "deleted function hello\n"
    code, out, err = run(gateway, "fn", "get", "hello")
    assert (code, out) == (1, "")
    assert err == "nimbus: error: function hello not found (HTTP 404)\n"


def test_cli_version_alias_keys_lifecycle(gateway: tuple[str, GatewayState]) -> None:
    """The issue-3 commands over HTTP, as a user would chain them."""
    gateway[1].functions["f"] = {
        "name": "f",
        "handler": "main.handler",
        "code_sha256": "ab" * 32,
        "revision": "1",
    }
    assert run(gateway, "version", "publish", "f", "--description", "v1") == (
        0,
        f"published version 1 of f (code sha256 {'ab' * 6})\n",
        "",
    )
    run(gateway, "version", "publish", "f")
    code, out, _ = run(gateway, "version", "list", "f")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["VERSION", "1", "2"]
    code, out, err = run(
        gateway, "alias", "set", "f", "live", "--version", "1", "--weight", "2=0.1"
    )
    assert (code, out, err) == (0, "alias live of f -> version 1, 10% to version 2\n", "")
    assert json.loads(gateway[1].seen[-1].body) == {
        "version": "1",
        "routing": {"version": "2", "weight": 0.1},
    }
    code, out, _ = run(gateway, "--json", "alias", "get", "f", "live")
    assert json.loads(out)["routing"] == {"version": "2", "weight": 0.1}
    code, out, _ = run(gateway, "alias", "list", "f")
    assert out.splitlines()[1].split()[:3] == ["live", "1", "10%"]
    code, _, err = run(gateway, "version", "delete", "f", "1")
    assert code == 1 and err == "nimbus: error: version 1 is used by an alias (HTTP 409)\n"
    assert run(gateway, "alias", "rm", "f", "live")[0] == 0
    assert run(gateway, "version", "delete", "f", "1") == (0, "deleted version 1 of f\n", "")
    code, _, err = run(gateway, "alias", "get", "f", "live")
    assert code == 1 and err == "nimbus: error: alias live of f not found (HTTP 404)\n"

    code, out, err = run(gateway, "keys", "create", "--namespace", "team-a")
    assert code == 0 and "nmb_k1_secret" in out and "cannot be shown again" in err
    code, out, _ = run(gateway, "--json", "keys", "list")
    assert json.loads(out) == {"keys": [gateway[1].keys["k1"]]} and "secret" not in out
    assert run(gateway, "keys", "revoke", "k1") == (0, "revoked key k1\n", "")
    code, _, err = run(gateway, "keys", "revoke", "k1")
    assert (code, err) == (1, "nimbus: error: key k1 not found (HTTP 404)\n")


def test_cli_bad_weight_exits_2_without_a_request(gateway: tuple[str, GatewayState]) -> None:
    code, out, err = run(
        gateway, "alias", "set", "f", "live", "--version", "1", "--weight", "2=1.5"
    )
    assert (code, out) == (2, "")
    assert err == (
        "nimbus: error: --weight must be VERSION=FRACTION with 0 ≤ FRACTION ≤ 1 (e.g. 2=0.1), "
        "got '2=1.5'\n"
    )
    assert gateway[1].seen == []


def test_cli_401_without_key_hints(gateway: tuple[str, GatewayState], tmp_path: Path) -> None:
    err = io.StringIO()
    code = main(
        ["--endpoint", gateway[0], "fn", "list"],
        env={},
        cwd=tmp_path,
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code == 1
    assert err.getvalue().startswith("nimbus: error: missing or invalid API key (HTTP 401)")
    assert "NIMBUS_API_KEY" in err.getvalue()


def test_cli_reads_credentials_file(gateway: tuple[str, GatewayState], tmp_path: Path) -> None:
    (tmp_path / ".nimbus").mkdir()
    (tmp_path / ".nimbus" / "credentials.json").write_text(
        json.dumps({"endpoint": gateway[0], "api_key": API_KEY})
    )
    (tmp_path / "sub").mkdir()
    out = io.StringIO()
    assert main(["fn", "list"], env={}, cwd=tmp_path / "sub", stdout=out, stderr=io.StringIO()) == 0


def test_cli_connection_refused(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    err = io.StringIO()
    code = main(
        ["fn", "list"],
        env={"NIMBUS_ENDPOINT": endpoint, "NIMBUS_API_KEY": "k"},
        cwd=tmp_path,
        stdout=io.StringIO(),
        stderr=err,
    )
    assert code == 1
    assert endpoint in err.getvalue() and "make up" in err.getvalue()


def test_sdk_imports_nothing_beyond_the_stdlib() -> None:
    code = (
        "import sys, nimbus.client, nimbus.client.upload, nimbus.cli.main; "
        "heavy = {'grpc', 'google', 'aetcd', 'redis', 'nats'}; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in heavy); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr
