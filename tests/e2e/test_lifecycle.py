"""Function lifecycle end to end: code packages, versions, weighted aliases, safe updates, keys."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
import uuid
import zipfile
from collections import Counter

import pytest
from support import zip_of

from tests.support import until

pytestmark = pytest.mark.asyncio(loop_scope="session")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def returns(value: str) -> dict[str, str]:
    return {"main.py": f"def handler(event, context):\n    return {value!r}\n"}


def b64(files: dict[str, str]) -> str:
    return base64.b64encode(zip_of(files)).decode()


def put_code(gw, name: str, files: dict[str, str], **extra):
    return gw.request(
        "PUT", f"/v1/functions/{name}/code", {"code": {"zip_base64": b64(files)}, **extra}
    )


def blobs(cluster) -> set[str]:
    return {p.stem for p in (cluster.layout.home / "code").glob("*.zip")}


async def test_same_code_twice_is_one_blob(cluster, gw):
    files = returns(f"shared-{uuid.uuid4().hex}")
    a, b = gw.create(unique("same"), files).json(), gw.create(unique("same"), files).json()
    assert a["code_sha256"] == b["code_sha256"]
    assert a["code_sha256"] in blobs(cluster)


def bad_zip_with(entry: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", "def handler(e, c): return 1\n")
        zf.writestr(entry, "x")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize(
    "code, match",
    [
        (base64.b64encode(b"definitely not a zip").decode(), "not a zip"),
        (bad_zip_with("../escape.py"), "'..'"),
        (bad_zip_with("/etc/evil"), "absolute"),
        (b64({"other.py": "x = 1\n"}), "main.py"),
    ],
)
async def test_bad_packages_are_rejected_and_nothing_is_stored(cluster, gw, code, match):
    before = blobs(cluster)
    name = unique("bad")
    res = gw.request(
        "POST",
        "/v1/functions",
        {
            "name": name,
            "runtime": "python3.11",
            "handler": "main.handler",
            "code": {"zip_base64": code},
        },
    )
    assert res.status == 400, res.body
    assert match in res.json()["message"]
    assert blobs(cluster) == before
    assert gw.request("GET", f"/v1/functions/{name}").status == 404


async def test_unreferenced_blobs_are_collected(cluster, gw):
    name = unique("gc")
    old = gw.create(name, returns(f"old-{uuid.uuid4().hex}")).json()["code_sha256"]
    new = put_code(gw, name, returns(f"new-{uuid.uuid4().hex}")).json()["code_sha256"]
    assert old != new
    await until(
        lambda: old not in blobs(cluster), 15, "the old blob collected", 0.1, in_thread=True
    )
    assert new in blobs(cluster)


# -- versions and aliases ----------------------------------------------------------------------


async def test_versions_snapshot_code_and_config(gw):
    name = unique("ver")
    assert gw.create(name, returns("one")).status == 200
    v1 = gw.request("POST", f"/v1/functions/{name}/versions", {"description": "first"})
    assert v1.status == 200, v1.body
    assert v1.json()["version"] == "1" and v1.json()["description"] == "first"
    # Publishing an unchanged $LATEST returns the same version, as Lambda does.
    assert gw.request("POST", f"/v1/functions/{name}/versions", {}).json()["version"] == "1"
    assert put_code(gw, name, returns("two")).status == 200
    assert gw.request("POST", f"/v1/functions/{name}/versions", {}).json()["version"] == "2"
    assert put_code(gw, name, returns("three")).status == 200

    listed = gw.request("GET", f"/v1/functions/{name}/versions").json()["versions"]
    assert [v["version"] for v in listed] == ["1", "2"]
    for qualifier, expected in (("1", "one"), ("2", "two"), ("$LATEST", "three"), ("", "three")):
        path = f"/v1/functions/{name}:invoke" + (f"?qualifier={qualifier}" if qualifier else "")
        res = gw.request("POST", path, raw=b"{}")
        assert res.status == 200 and res.json() == expected, (qualifier, res.body)
        assert res.headers["x-nimbus-executed-version"] == (qualifier or "$LATEST")
    assert gw.request("POST", f"/v1/functions/{name}:invoke?qualifier=9", raw=b"{}").status == 404


async def test_weighted_alias_splits_calls(gw):
    name = unique("split")
    assert gw.create(name, returns("a")).status == 200
    gw.request("POST", f"/v1/functions/{name}/versions", {})
    put_code(gw, name, returns("b"))
    gw.request("POST", f"/v1/functions/{name}/versions", {})
    alias = gw.request(
        "PUT",
        f"/v1/functions/{name}/aliases/live",
        {"version": "1", "routing": {"version": "2", "weight": 0.3}},
    )
    assert alias.status == 200, alias.body
    assert alias.json()["routing"] == {"version": "2", "weight": 0.3}

    def run_calls(n: int, counts: Counter) -> None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        headers = {"Authorization": f"Bearer {gw.api_key}"}
        for _ in range(n):
            conn.request(
                "POST", f"/v1/functions/{name}:invoke?qualifier=live", body=b"{}", headers=headers
            )
            res = conn.getresponse()
            res.read()
            counts[res.status, res.getheader("x-nimbus-executed-version")] += 1
        conn.close()

    counts: Counter = Counter()
    threads = [threading.Thread(target=run_calls, args=(500, counts)) for _ in range(4)]
    await asyncio.to_thread(lambda: ([t.start() for t in threads], [t.join() for t in threads]))
    assert sum(counts.values()) == 2000 and all(status == 200 for status, _ in counts)
    share = counts[200, "2"] / 2000
    assert abs(share - 0.3) <= 0.05, counts


async def test_alias_blocks_version_delete(gw):
    name = unique("aliased")
    assert gw.create(name, returns("x")).status == 200
    gw.request("POST", f"/v1/functions/{name}/versions", {})
    assert gw.request("PUT", f"/v1/functions/{name}/aliases/prod", {"version": "1"}).status == 200
    assert gw.request("GET", f"/v1/functions/{name}/aliases/prod").json()["version"] == "1"
    assert [
        a["alias"] for a in gw.request("GET", f"/v1/functions/{name}/aliases").json()["aliases"]
    ] == ["prod"]
    blocked = gw.request("DELETE", f"/v1/functions/{name}/versions/1")
    assert blocked.status == 409 and "prod" in blocked.json()["message"]
    assert gw.request("PUT", f"/v1/functions/{name}/aliases/bad", {"version": "7"}).status == 404
    assert gw.request("DELETE", f"/v1/functions/{name}/aliases/prod").status == 200
    assert gw.request("DELETE", f"/v1/functions/{name}/versions/1").status == 200
    assert gw.request("POST", f"/v1/functions/{name}:invoke?qualifier=1", raw=b"{}").status == 404


# -- safe updates ------------------------------------------------------------------------------


async def test_stale_expected_revision_is_409(gw):
    name = unique("rev")
    rev = int(gw.create(name, returns("x")).json()["revision"])
    assert (
        gw.request(
            "PATCH", f"/v1/functions/{name}", {"timeout_s": 5, "expected_revision": rev}
        ).status
        == 200
    )
    stale = gw.request("PATCH", f"/v1/functions/{name}", {"timeout_s": 6, "expected_revision": rev})
    assert stale.status == 409
    assert put_code(gw, name, returns("y"), expected_revision=rev).status == 409


async def test_twenty_concurrent_updates_lose_nothing(gw):
    name = unique("race")
    assert gw.create(name, returns("x")).status == 200
    results = await asyncio.gather(
        *(
            asyncio.to_thread(
                gw.request, "PATCH", f"/v1/functions/{name}", {"env": {f"K{i}": str(i)}}
            )
            for i in range(20)
        )
    )
    assert [r.status for r in results] == [200] * 20, [r.body for r in results if r.status != 200]
    env = gw.request("GET", f"/v1/functions/{name}").json()["env"]
    assert env == {f"K{i}": str(i) for i in range(20)}


async def test_code_update_under_load_fails_no_call(gw):
    name = unique("swap")
    assert gw.create(name, returns("old")).status == 200
    stop = threading.Event()
    seen: list[tuple[float, int, bytes]] = []

    def loop() -> None:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
        headers = {"Authorization": f"Bearer {gw.api_key}"}
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            conn.request("POST", f"/v1/functions/{name}:invoke", body=b"{}", headers=headers)
            res = conn.getresponse()
            seen.append((time.monotonic(), res.status, res.read()))
        conn.close()

    workers = [threading.Thread(target=loop) for _ in range(3)]
    for w in workers:
        w.start()
    try:
        await until(lambda: len(seen) > 30, 10, "the first calls", 0.1, in_thread=True)
        updated_at = time.monotonic()
        assert put_code(gw, name, returns("new")).status == 200
        await until(
            lambda: any(t > updated_at + 1.0 for t, _, _ in seen),
            10,
            "calls a second after the update",
            0.1,
            in_thread=True,
        )
    finally:
        stop.set()
        await asyncio.to_thread(lambda: [w.join() for w in workers])
    assert all(status == 200 for _, status, _ in seen), Counter(status for _, status, _ in seen)
    late = [body for t, _, body in seen if t > updated_at + 1.0]
    assert late and all(body == b'"new"' for body in late)


# -- keys and deletion -------------------------------------------------------------------------


async def test_keys_list_and_revoke(gw):
    namespace = unique("ns").lower()
    issued = gw.request("POST", "/v1/keys", {"namespace": namespace, "description": "temp"}).json()
    assert issued["api_key"].startswith("nmb_")
    listed = gw.request("GET", "/v1/keys").json()["keys"]
    mine = [k for k in listed if k["key_id"] == issued["key_id"]]
    assert mine and mine[0]["namespace"] == namespace and mine[0]["api_key"] == ""
    key = issued["api_key"]
    assert gw.request("GET", "/v1/functions", key=key).status == 200
    assert gw.request("GET", "/v1/keys", key=key).status == 403
    assert gw.request("DELETE", f"/v1/keys/{issued['key_id']}").status == 200
    revoked_at = time.monotonic()
    # Every api and invoker replica refuses it within 2 s (several calls reach both replicas).
    await until(
        lambda: all(gw.request("GET", "/v1/functions", key=key).status == 401 for _ in range(4)),
        2,
        "the revoked key refused by the api",
        0.1,
        in_thread=True,
    )
    await until(
        lambda: all(gw.invoke("x", {}, key=key).status == 401 for _ in range(4)),
        2,
        "the revoked key refused by the invoker",
        0.1,
        in_thread=True,
    )
    assert time.monotonic() - revoked_at < 2.5


async def test_delete_removes_versions_and_aliases_and_frees_the_name(gw):
    name = unique("reuse")
    assert gw.create(name, returns("first")).status == 200
    gw.request("POST", f"/v1/functions/{name}/versions", {})
    gw.request("PUT", f"/v1/functions/{name}/aliases/prod", {"version": "1"})
    assert gw.invoke(name, {}).json() == "first"
    assert gw.request("DELETE", f"/v1/functions/{name}").status == 200
    assert gw.create(name, returns("second")).status == 200
    assert gw.request("GET", f"/v1/functions/{name}/versions").json()["versions"] == []
    assert gw.request("GET", f"/v1/functions/{name}/aliases/prod").status == 404
    assert gw.invoke(name, {}).json() == "second"
    assert gw.request("POST", f"/v1/functions/{name}/versions", {}).json()["version"] == "1"


async def test_body_over_the_gateway_limit_is_413(gw):
    # The base64 of a zip over the 50 MB default limit: Envoy refuses it before a service reads it.
    body = (
        b'{"name": "huge", "runtime": "python3.11", "handler": "main.handler",'
        b' "code": {"zip_base64": "' + b"A" * (70 * 1024 * 1024) + b'"}}'
    )
    res = await asyncio.to_thread(gw.request, "POST", "/v1/functions", raw=body, timeout=120)
    assert res.status == 413, res.body[:200]
    assert res.json()["message"]


async def test_code_is_prefetched_by_every_node_before_the_first_call(cluster, gw):
    from nimbus.nodeagent.layout import NodeLayout

    nodes = [
        n.replace("node-agent-", "node-") for n in cluster.names if n.startswith("node-agent-")
    ]
    name = unique("prefetch")
    sha = gw.create(name, returns(f"pre-{uuid.uuid4().hex}")).json()["code_sha256"]

    def everywhere(digest: str) -> bool:
        return all(
            (NodeLayout.for_node(str(cluster.layout.home), node).code_dir / digest).is_dir()
            for node in nodes
        )

    await until(lambda: everywhere(sha), 10, "the code on every node", 0.1, in_thread=True)
    updated = put_code(gw, name, returns(f"pre2-{uuid.uuid4().hex}")).json()["code_sha256"]
    await until(lambda: everywhere(updated), 10, "the new code on every node", 0.1, in_thread=True)
