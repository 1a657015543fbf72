"""Fair async dispatch and log budgets across namespaces (issue 15.4), against the real cluster:
tenant A floods async events whose calls each print 256 KB; tenant B's events still start within
2 s, and B's log lines are all there after A has printed past the log budget.

Before per-namespace consumers, one consumer delivered every tenant's events in stream order, so
B's events waited behind A's whole backlog (tens of seconds here); before a log stream per
namespace, A's output evicted B's lines from the one shared stream (discard old). A's calls also
last 0.2 s, so its backlog lasts while B is measured. The quick test floods 3,000 events (the
backlog B lands behind is about two thousand deep); the issue's 20,000 are in the slow test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import grpc
import nats
import pytest
from google.api import httpbody_pb2
from nimbus.api.v1 import invocations_pb2, invocations_pb2_grpc
from support import Gateway

from tests.support import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

LOUD = {
    "main.py": (
        "import time\n"
        "LINE = 'a' * (256 * 1024 - 1)\n"
        "def handler(event, context):\n"
        "    print(LINE)\n"
        "    time.sleep(0.2)\n"
        "    return 1\n"
    )
}
QUICK = {
    "main.py": (
        "import time\n"
        "def handler(event, context):\n"
        "    started = time.time()\n"
        "    print('b-line', event['id'])\n"
        "    return {'started': started, 'id': event['id']}\n"
    )
}
START_WITHIN_S = 2.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tenant(gw: Gateway) -> Gateway:
    res = gw.request("POST", "/v1/keys", {"namespace": unique("fair")})
    assert res.status == 200, res.body
    return Gateway(gw.port, res.json()["api_key"])


async def flood(gw: Gateway, name: str, count: int, concurrency: int = 32) -> int:
    """Submits count events over gRPC; returns how many were accepted."""
    left = iter(range(count))
    accepted = 0
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        stub = invocations_pb2_grpc.InvocationsStub(channel)
        meta = (("authorization", f"Bearer {gw.api_key}"),)
        body = httpbody_pb2.HttpBody(content_type="application/json", data=b"{}")

        async def worker() -> None:
            nonlocal accepted
            for _ in left:
                for attempt in range(50):
                    try:
                        await stub.InvokeAsync(
                            invocations_pb2.InvokeAsyncRequest(name=name, body=body),
                            metadata=meta,
                            timeout=10,
                        )
                        accepted += 1
                        break
                    except grpc.aio.AioRpcError as err:
                        if err.code() not in (
                            grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                        ):
                            raise
                        await asyncio.sleep(0.1 * (attempt + 1))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return accepted


async def waiting_events(js: Any, namespace: str) -> int:
    info = await js.stream_info("NIMBUS_EVENTS", subjects_filter=f"nimbus.events.{namespace}.>")
    return sum((info.state.subjects or {}).values())


async def waiting_events_now(cluster: Any, namespace: str) -> int:
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        return await waiting_events(nc.jetstream(), namespace)
    finally:
        await nc.close()


def finished(gw: Gateway, invocation_id: str) -> dict[str, Any] | None:
    res = gw.request("GET", f"/v1/invocations/{invocation_id}")
    if res.status != 200:
        return None
    record = res.json()
    return record if record["status"] in ("SUCCEEDED", "FAILED") else None


def all_lines(gw: Gateway, name: str, request_id: str, event_id: str) -> list[dict[str, Any]]:
    res = gw.request("GET", f"/v1/functions/{name}/logs?request_id={request_id}")
    assert res.status == 200, res.body
    lines = res.json()["lines"]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("START") for m in messages), messages
    assert f"b-line {event_id}" in messages, messages
    assert any(m.startswith("END") for m in messages), messages
    assert any(m.startswith("REPORT") for m in messages), messages
    return lines


async def a_flood_does_not_delay_b(cluster: Any, gw: Gateway, events: int) -> None:
    a, b = tenant(gw), tenant(gw)
    loud, quick = unique("loud"), unique("quick")
    assert a.create(loud, LOUD).status == 200
    assert b.create(quick, QUICK).status == 200
    # Both warm: the 2 s are about queueing, not a cold start.
    assert a.invoke(loud, {}).status == 200
    assert b.invoke(quick, {"id": "warm"}).status == 200
    ns_a = a.request("GET", f"/v1/functions/{loud}").json()["namespace"]
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    js = nc.jetstream()
    try:
        started = time.monotonic()
        assert await flood(a, loud, events) == events
        print(f"flood: {events} events accepted in {time.monotonic() - started:.1f} s")
        backlog = await waiting_events(js, ns_a)
        # A's backlog stands in front of B's events in the stream.
        assert backlog >= min(events // 2, 1000), backlog

        delays: list[float] = []
        ids: list[tuple[str, str]] = []
        for i in range(5):
            event_id = f"b{i}"
            sent = time.time()
            res = b.request("POST", f"/v1/functions/{quick}:invokeAsync", {"id": event_id})
            assert res.status == 200, res.body
            invocation_id = res.json()["invocation_id"]
            record = await eventually(
                lambda i=invocation_id: finished(b, i), timeout_s=120, what="B's event to finish"
            )
            assert record["status"] == "SUCCEEDED", record
            delays.append(json.loads(record["result_json"])["started"] - sent)
            ids.append((record["request_id"], event_id))
            await asyncio.sleep(0.3)
        backlog_after = await waiting_events(js, ns_a)
        print(f"B's start delays {[round(d, 2) for d in delays]} s; A's backlog {backlog_after}")
        assert max(delays) <= START_WITHIN_S, (delays, backlog_after)
        # A was still flooding all along: the test measured B beside a deep backlog.
        assert backlog_after > 0
        # A prints on, past the cluster's log budget (NIMBUS_LOG_MAX_MB=128 in conftest), after
        # B's lines: 700 calls × 256 KB = 175 MB.
        await eventually(
            lambda: asyncio.run(waiting_events_now(cluster, ns_a)) <= backlog_after - 700,
            timeout_s=120,
            what="A to print past the log budget",
        )
        await asyncio.sleep(3)  # shipped
        for request_id, event_id in ids:
            await eventually(
                lambda r=request_id, e=event_id: all_lines(b, quick, r, e),
                timeout_s=30,
                what="B's log lines",
            )
    finally:
        # A's backlog would slow the rest of the suite: drop what is left of it.
        await js.purge_stream("NIMBUS_EVENTS", subject=f"nimbus.events.{ns_a}.>")
        await nc.close()
        a.request("DELETE", f"/v1/functions/{loud}")
        b.request("DELETE", f"/v1/functions/{quick}")


async def test_b_starts_within_2s_while_a_floods(cluster, gw):
    await a_flood_does_not_delay_b(cluster, gw, 3000)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_b_starts_within_2s_while_a_floods_20000_events(cluster, gw):
    """The issue's number: ~40 s here (27 s of it submitting); what is left of A's backlog once B
    is checked is purged, not run."""
    await a_flood_does_not_delay_b(cluster, gw, 20000)
