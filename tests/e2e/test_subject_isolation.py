"""Issue 15.1 against the real cluster: NATS subjects are confined to their namespace.

Tenant B's subject triggers on `>`, `*.>`, `logs.>`, `*.events.>`, `*.dlq.>` see none of tenant
A's events, logs or dead letters, and do not re-match B's own (no loop); B's destinations cannot
reach A's triggers; a message published while every invoker is stopped runs once they are back.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import nats
import nats.errors
import pytest
from support import Gateway

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(300)]

ECHO = {"main.py": "def handler(event, context):\n    return event\n"}
FAILS = {"main.py": "def handler(event, context):\n    raise RuntimeError('no')\n"}
# Prints what it got, so the test can count its runs in its logs.
SPY = {
    "main.py": (
        "import json\n"
        "def handler(event, context):\n"
        "    print('SPY ' + json.dumps(event)[:300])\n"
        "    return 'seen'\n"
    )
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def eventually(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = await asyncio.to_thread(check)
        if last:
            return last
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


def tenant(gw: Gateway) -> tuple[Gateway, str]:
    namespace = unique("t")
    res = gw.request("POST", "/v1/keys", {"namespace": namespace})
    assert res.status == 200, res.body
    return Gateway(gw.port, res.json()["api_key"]), namespace


def spy_lines(gw: Gateway, name: str) -> list[str]:
    res = gw.request("GET", f"/v1/functions/{name}/logs?limit=10000")
    assert res.status == 200, res.body
    return [line["message"] for line in res.json()["lines"] if "SPY " in line["message"]]


def finished(gw: Gateway, invocation_id: str) -> dict[str, Any] | None:
    res = gw.request("GET", f"/v1/invocations/{invocation_id}")
    record = res.json() if res.status == 200 else None
    return record if record and record["status"] in ("SUCCEEDED", "FAILED") else None


def invoke_async(gw: Gateway, name: str, event: Any) -> str:
    res = gw.request("POST", f"/v1/functions/{name}:invokeAsync", event)
    assert res.status == 200, res.body
    return str(res.json()["invocation_id"])


async def until_subscribed(cluster: Any, namespace: str, trigger_id: str) -> None:
    """Until the trigger's durable queue exists (the invokers make it from their etcd watch), or
    10 s have passed (the assertions then tell what is missing)."""
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                await js.consumer_info(f"NIMBUS_SUBJECTS_{namespace}", f"trigger-{trigger_id}")
                break
            except Exception:
                await asyncio.sleep(0.2)
    finally:
        await nc.close()
    await asyncio.sleep(0.5)  # both replicas subscribed to its deliveries


def add_trigger(gw: Gateway, name: str, subject: str) -> str:
    res = gw.request(
        "POST", f"/v1/functions/{name}/triggers", {"type": "subject", "subject": subject}
    )
    assert res.status == 200, res.body
    assert res.json()["subject"] == subject  # the user's own name, not the wire's
    return str(res.json()["id"])


WILD = [">", "*.>", "logs.>", "*.events.>", "*.dlq.>"]


async def test_wildcard_triggers_see_nothing_of_another_namespace_and_do_not_loop(cluster, gw):
    a, ns_a = tenant(gw)
    b, ns_b = tenant(gw)
    victim, failing = unique("victim"), unique("failing")
    assert a.create(victim, ECHO).status == 200
    assert a.create(failing, FAILS).status == 200
    assert (
        a.request("PUT", f"/v1/functions/{failing}/event-invoke-config", {"max_retries": 0}).status
        == 200
    )
    spy = unique("spy")
    assert b.create(spy, SPY).status == 200
    ids = [add_trigger(b, spy, subject) for subject in WILD]
    # The platform's subjects spelled out, as the attacker would try them.
    for subject in (f"logs.{ns_a}.>", f"*.events.{ns_a}.*", f"nimbus.dlq.{ns_a}.>"):
        res = b.request(
            "POST", f"/v1/functions/{spy}/triggers", {"type": "subject", "subject": subject}
        )
        if res.status == 200:
            ids.append(str(res.json()["id"]))
    for trigger_id in ids:
        await until_subscribed(cluster, ns_b, trigger_id)

    # A's traffic: sync calls (logs), async events, and a dead letter.
    assert a.invoke(victim, {"secret": "sync"}).status == 200
    done = [invoke_async(a, victim, {"secret": f"async-{i}"}) for i in range(3)]
    done.append(invoke_async(a, failing, {"secret": "dead"}))
    for invocation_id in done:
        await eventually(lambda i=invocation_id: finished(a, i), 30, "A's events")
    dead = a.request("GET", f"/v1/functions/{failing}/deadletters").json()["dead_letters"]
    assert len(dead) == 1

    # B's own message on its own subject: the two triggers it matches each run the spy once.
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        await nc.publish(f"tenant.{ns_b}.b.ping", b'{"ping": 1}')
        await nc.flush()
    finally:
        await nc.close()
    lines = await eventually(lambda: len(spy_lines(b, spy)) >= 2 and spy_lines(b, spy), 30, "spy")
    # Logs and events ship within seconds: any of A's (or a loop of B's own) would show by now.
    await asyncio.sleep(6)
    lines = spy_lines(b, spy)
    assert not any("secret" in line or ns_a in line for line in lines), lines
    assert len(lines) == 2 and all('"ping": 1' in line for line in lines), lines


async def test_a_loop_of_ones_own_making_stops(cluster, gw):
    """A `>` trigger whose function's destination publishes in the namespace feeds itself: it
    stops after 16 destinations in a row (as Lambda's recursive loop detection does)."""
    a, ns_a = tenant(gw)
    looper = unique("looper")
    assert a.create(looper, SPY).status == 200
    assert (
        a.request(
            "PUT",
            f"/v1/functions/{looper}/event-invoke-config",
            {"on_success": {"subject": "again"}},
        ).status
        == 200
    )
    await until_subscribed(cluster, ns_a, add_trigger(a, looper, ">"))
    await asyncio.sleep(1.0)  # the invokers see the event config
    assert a.request("POST", "/v1/subjects/start:publish", raw=b'{"go": 1}').status == 200
    await eventually(lambda: len(spy_lines(a, looper)) >= 17, 60, "17 rounds")
    await asyncio.sleep(6)
    assert len(spy_lines(a, looper)) == 17  # the first run and 16 rounds, then no more


async def test_a_destination_stays_in_its_namespace(cluster, gw):
    a, ns_a = tenant(gw)
    b, _ = tenant(gw)
    subject = f"orders.{uuid.uuid4().hex[:8]}"
    victim = unique("victim")
    assert a.create(victim, SPY).status == 200
    await until_subscribed(cluster, ns_a, add_trigger(a, victim, subject))

    sender = unique("sender")
    assert b.create(sender, ECHO).status == 200
    # The wire subject of A's trigger is not B's to name...
    res = b.request(
        "PUT",
        f"/v1/functions/{sender}/event-invoke-config",
        {"on_success": {"subject": f"tenant.{ns_a}.{subject}"}},
    )
    assert res.status == 400 and res.json()["message"].startswith("on_success.subject"), res.body
    # ... and the same user subject is B's own.
    res = b.request(
        "PUT", f"/v1/functions/{sender}/event-invoke-config", {"on_success": {"subject": subject}}
    )
    assert res.status == 200, res.body
    await asyncio.sleep(1.0)  # the invokers see the event config
    # A's producer publishes with A's key; B's key publishing the same subject reaches B's own.
    res = a.request("POST", f"/v1/subjects/{subject}:publish", raw=b'{"from": "a"}')
    assert res.status == 200, res.body
    res = b.request("POST", f"/v1/subjects/{subject}:publish", raw=b'{"from": "b-api"}')
    assert res.status == 200, res.body
    res = b.request("POST", f"/v1/subjects/tenant.{ns_a}.{subject}:publish", raw=b"{}")
    assert res.status == 400, res.body
    for i in range(3):
        invocation_id = invoke_async(b, sender, {"from": "b", "n": i})
        await eventually(lambda i=invocation_id: finished(b, i), 30, "B's event")
    await eventually(lambda: spy_lines(a, victim), 30, "A's own message")
    await asyncio.sleep(4)
    lines = spy_lines(a, victim)
    assert len(lines) == 1 and '"from": "a"' in lines[0], lines


async def test_messages_published_while_the_invokers_are_stopped_are_not_lost(cluster, gw):
    """The trigger is even created while they are stopped."""
    a, ns_a = tenant(gw)
    name = unique("durable")
    assert a.create(name, ECHO).status == 200
    subject, out = f"jobs.{uuid.uuid4().hex[:8]}", f"done.{uuid.uuid4().hex[:8]}"
    assert (
        a.request(
            "PUT", f"/v1/functions/{name}/event-invoke-config", {"on_success": {"subject": out}}
        ).status
        == 200
    )
    assert a.invoke(name, {"warm": True}).status == 200

    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        results = await nc.subscribe(f"tenant.{ns_a}.{out}")
        js = nc.jetstream()
        stopped: list[str] = []
        try:
            for replica in ("invoker-1", "invoker-2"):
                await asyncio.to_thread(cluster.stop_program, replica)
                stopped.append(replica)
            # Made while no invoker runs: its queue exists once the create has answered.
            await asyncio.to_thread(add_trigger, a, name, subject)
            for i in range(5):
                await js.publish(f"tenant.{ns_a}.{subject}", json.dumps({"job": i}).encode())
            await asyncio.sleep(1.0)
        finally:
            for replica in stopped:
                await asyncio.to_thread(cluster.start_program, replica)
            for replica in stopped:
                await cluster.wait_healthy(replica, timeout_s=60)
        jobs: list[int] = []
        deadline = time.monotonic() + 60
        while len(jobs) < 5 and time.monotonic() < deadline:
            try:
                msg = await results.next_msg(timeout=1)
            except nats.errors.TimeoutError:
                continue
            jobs.append(json.loads(msg.data)["requestPayload"]["job"])
        assert sorted(jobs) == [0, 1, 2, 3, 4]
        with pytest.raises(nats.errors.TimeoutError):  # and each ran once
            await results.next_msg(timeout=2)
    finally:
        await nc.close()
