"""instance_concurrency end to end: one instance serves several calls at once, so a burst needs few
instances; the setting is validated, shown, snapshotted by versions, and `provided` refuses it."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter

import pytest
from support import Gateway
from test_scaling import SLEEPS, burst, instances_of

pytestmark = pytest.mark.asyncio(loop_scope="session")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_burst_shares_few_instances(cluster, gw: Gateway):
    name = unique("multi")
    created = gw.create(name, SLEEPS, instance_concurrency=10, keep_alive_s=2)
    assert created.status == 200 and created.json()["instance_concurrency"] == 10
    seen: set[str] = set()
    done = asyncio.Event()

    async def watch() -> None:
        while not done.is_set():
            seen.update(i.instance_id for i in await instances_of(cluster, name))
            await asyncio.sleep(0.05)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    results = await asyncio.to_thread(burst, gw, name, 20, b'{"s": 0.3}')
    served_s = time.monotonic() - started
    seen.update(i.instance_id for i in await instances_of(cluster, name))
    done.set()
    await watcher
    assert Counter(status for status, _, _ in results) == {200: 20}, [
        b for s, _, b in results if s != 200
    ]
    assert all(body == b'"ok"' for _, _, body in results)
    # Two instances of 10 slots hold the burst; one call per instance would start 20.
    assert 1 <= len(seen) <= 4, seen
    # Serially, 20 × 300 ms is 6 s.
    assert served_s < 4.5, f"20 calls of 300 ms took {served_s:.1f}s (serial: 6 s)"


@pytest.mark.parametrize("value", [0, 101])
async def test_out_of_range_is_400_naming_the_field(gw: Gateway, value: int):
    res = gw.create(unique("bad"), SLEEPS, instance_concurrency=value)
    assert res.status == 400
    assert (
        res.json()["message"]
        == f"instance_concurrency: {value} is out of range; it must be between 1 and 100"
    )


async def test_update_shows_and_versions_snapshot_it(gw: Gateway):
    name = unique("upd")
    assert gw.create(name, SLEEPS).json()["instance_concurrency"] == 1
    before = gw.request("GET", f"/v1/functions/{name}").json()
    bad = gw.request("PATCH", f"/v1/functions/{name}", {"instance_concurrency": 101})
    assert bad.status == 400 and "instance_concurrency" in bad.json()["message"]
    res = gw.request("PATCH", f"/v1/functions/{name}", {"instance_concurrency": 5})
    assert res.status == 200 and res.json()["instance_concurrency"] == 5
    # A config change like memory: a new revision, so new calls get instances with 5 slots.
    assert int(res.json()["revision"]) > int(before["revision"])
    assert gw.invoke(name, {"s": 0}).status == 200
    version = gw.request("POST", f"/v1/functions/{name}/versions", {}).json()
    assert version["config"]["instance_concurrency"] == 5
    assert gw.request("GET", f"/v2/functions/{name}").json()["instance_concurrency"] == 5


async def test_provided_runtime_refuses_more_than_one(gw: Gateway):
    res = gw.request(
        "POST",
        "/v1/functions",
        {
            "name": unique("prov"),
            "runtime": "provided",
            "handler": "bootstrap",
            "instance_concurrency": 2,
            "code": {"zip_base64": ""},
        },
    )
    assert res.status == 400
    assert (
        res.json()["message"].startswith("instance_concurrency: 2")
        and "Runtime API" in res.json()["message"]
    )
