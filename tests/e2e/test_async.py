"""Async invocations and triggers end to end, through Envoy, with the real NATS JetStream and Redis.

Each test asserts an outcome: every accepted event ends SUCCEEDED (through kill -9 of an invoker
and of nats-server), failures are retried then dead-lettered and replayed, timers fire once per
tick with two invokers, subject messages and public HTTP requests run the function.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from typing import Any

import grpc
import nats
import pytest
from google.api import httpbody_pb2
from nimbus.api.v1 import invocations_pb2, invocations_pb2_grpc
from support import Gateway, zip_of

from tests.support import eventually

pytestmark = pytest.mark.asyncio(loop_scope="session")

ID_ECHO = {"main.py": "def handler(event, context):\n    return {'id': event.get('id')}\n"}
ECHO = {"main.py": "def handler(event, context):\n    return event\n"}
FAILS = {
    "main.py": (
        "def handler(event, context):\n"
        "    raise RuntimeError('always fails: ' + str(event.get('n')))\n"
    )
}
HTTP_FN = {
    "main.py": (
        "import json\n"
        "def handler(event, context):\n"
        "    q = event['queryStringParameters'] or {}\n"
        "    body = '%s %s q=%s body=%s' % (\n"
        "        event['httpMethod'], event['path'], q.get('x'), event['body'])\n"
        "    return {'statusCode': 201,\n"
        "            'headers': {'x-custom': 'yes', 'content-type': 'text/plain'},\n"
        "            'body': body}\n"
    )
}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def invoke_async(gw: Gateway, name: str, event: Any, key: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gw.api_key}"}
    if key:
        headers["x-nimbus-idempotency-key"] = key
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=30)
    try:
        conn.request(
            "POST",
            f"/v1/functions/{name}:invokeAsync",
            body=json.dumps(event).encode(),
            headers=headers,
        )
        res = conn.getresponse()
        return res.status, json.loads(res.read() or b"{}")
    finally:
        conn.close()


def finished(gw: Gateway, invocation_id: str) -> dict[str, Any] | None:
    res = gw.request("GET", f"/v1/invocations/{invocation_id}")
    if res.status != 200:
        return None
    record = res.json()
    return record if record["status"] in ("SUCCEEDED", "FAILED") else None


def namespace_of(gw: Gateway) -> str:
    name = unique("ns")
    assert gw.create(name, ECHO).status == 200
    ns = gw.request("GET", f"/v1/functions/{name}").json()["namespace"]
    gw.request("DELETE", f"/v1/functions/{name}")
    return ns


# -- accept, records, idempotency -----------------------------------------------------------


async def test_invoke_async_runs_and_is_recorded(gw):
    name = unique("async")
    assert gw.create(name, ECHO).status == 200
    status, body = await asyncio.to_thread(invoke_async, gw, name, {"hello": "async"})
    assert status == 200, body
    record = await eventually(lambda: finished(gw, body["invocation_id"]))
    assert record["status"] == "SUCCEEDED" and record["attempts"] == 1
    assert json.loads(record["result_json"]) == {"hello": "async"}
    assert record["function"] == name and record["version"] == "$LATEST" and record["request_id"]
    assert record["created_at"] <= record["updated_at"]


async def test_invoke_async_errors_come_at_once(gw):
    status, body = await asyncio.to_thread(invoke_async, gw, unique("nope"), {})
    assert status == 404 and "not found" in body["message"]
    name = unique("async-bad")
    assert gw.create(name, ECHO).status == 200
    bad = gw.request("POST", f"/v1/functions/{name}:invokeAsync", raw=b"{not json")
    assert bad.status == 400 and "JSON" in bad.json()["message"]
    assert gw.request("GET", "/v1/invocations/not-an-id").status == 400
    assert gw.request("GET", f"/v1/invocations/{uuid.uuid4()}").status == 404


async def test_another_namespace_cannot_see_an_invocation(gw):
    name = unique("tenant")
    assert gw.create(name, ECHO).status == 200
    _, body = await asyncio.to_thread(invoke_async, gw, name, {"secret": 1})
    other = gw.request(
        "POST", "/v1/keys", {"namespace": unique("other")[:20], "description": "async test"}
    )
    assert other.status == 200, other.body
    res = gw.request("GET", f"/v1/invocations/{body['invocation_id']}", key=other.json()["api_key"])
    assert res.status == 404


async def test_idempotency_key_returns_the_first_invocation_and_runs_once(gw):
    name = unique("idem")
    assert gw.create(name, ECHO).status == 200
    key = uuid.uuid4().hex
    first = await asyncio.to_thread(invoke_async, gw, name, {"n": 1}, key)
    second = await asyncio.to_thread(invoke_async, gw, name, {"n": 2}, key)
    assert first[0] == second[0] == 200
    assert first[1]["invocation_id"] == second[1]["invocation_id"]
    record = await eventually(lambda: finished(gw, first[1]["invocation_id"]))
    assert record["attempts"] == 1 and json.loads(record["result_json"]) == {"n": 1}
    other = await asyncio.to_thread(invoke_async, gw, name, {"n": 3}, key + "-2")
    assert other[1]["invocation_id"] != first[1]["invocation_id"]


# -- 2,000 events, one invoker killed -------------------------------------------------------


async def submit_all(
    gw: Gateway, name: str, count: int, on_half: Any = None, concurrency: int = 48
) -> tuple[dict[str, str], float]:
    """InvokeAsync over gRPC through the gateway; each event's id doubles as its idempotency key,
    so a submit retried after a failure (the invoker it reached was killed) is not stored twice."""
    ids: dict[str, str] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(f"e{i:05d}")
    half = asyncio.Event()
    start = time.monotonic()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        stub = invocations_pb2_grpc.InvocationsStub(channel)

        async def worker() -> None:
            while not queue.empty():
                event_id = queue.get_nowait()
                body = httpbody_pb2.HttpBody(
                    content_type="application/json", data=json.dumps({"id": event_id}).encode()
                )
                for attempt in range(100):
                    try:
                        res = await stub.InvokeAsync(
                            invocations_pb2.InvokeAsyncRequest(name=name, body=body),
                            metadata=(
                                ("authorization", f"Bearer {gw.api_key}"),
                                ("x-nimbus-idempotency-key", event_id),
                            ),
                            timeout=10,
                        )
                        ids[event_id] = res.invocation_id
                        break
                    except grpc.aio.AioRpcError as err:
                        if err.code() not in (
                            grpc.StatusCode.UNAVAILABLE,
                            grpc.StatusCode.DEADLINE_EXCEEDED,
                            grpc.StatusCode.INTERNAL,
                            grpc.StatusCode.UNKNOWN,
                        ):
                            raise
                        await asyncio.sleep(0.1 * min(attempt + 1, 10))
                if len(ids) >= count // 2 and not half.is_set():
                    half.set()
                    if on_half is not None:
                        on_half()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids, time.monotonic() - start


async def wait_consumer_idle(cluster: Any, timeout_s: float) -> None:
    """Until the shared JetStream consumer has nothing pending or unacked: every stored event has
    finished (cheaper than polling thousands of records while they run)."""
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        js = nc.jetstream()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                info = await js.consumer_info("NIMBUS_EVENTS", "invokers")
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"events still pending after {timeout_s}s")
            await asyncio.sleep(0.1)
    finally:
        await nc.close()


async def wait_all_finished(
    gw: Gateway, ids: list[str], timeout_s: float, cluster: Any = None
) -> dict[str, dict[str, Any]]:
    if cluster is not None:
        await wait_consumer_idle(cluster, timeout_s)
    pending = set(ids)
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}") as channel:
        stub = invocations_pb2_grpc.InvocationsStub(channel)
        meta = (("authorization", f"Bearer {gw.api_key}"),)
        sem = asyncio.Semaphore(32)

        async def check(invocation_id: str) -> None:
            async with sem:
                try:
                    inv = await stub.GetInvocation(
                        invocations_pb2.GetInvocationRequest(id=invocation_id),
                        metadata=meta,
                        timeout=10,
                    )
                except grpc.aio.AioRpcError:
                    return
            if inv.status in ("SUCCEEDED", "FAILED"):
                done[invocation_id] = {
                    "status": inv.status,
                    "attempts": inv.attempts,
                    "result": inv.result_json,
                    "created_at": inv.created_at,
                    "updated_at": inv.updated_at,
                }
                pending.discard(invocation_id)

        while pending and time.monotonic() < deadline:
            await asyncio.gather(*(check(i) for i in list(pending)))
            if pending:
                await asyncio.sleep(1.0)
    assert not pending, f"{len(pending)} accepted events never finished, e.g. {sorted(pending)[:5]}"
    return done


async def warm(cluster: Any, gw: Gateway, name: str, instances: int) -> None:
    """Deploys name with min_instances and waits until both invokers see them, so the numbers
    below measure the async path rather than the autoscaler's ramp-up."""
    assert gw.create(name, ID_ECHO, timeout_s=10, min_instances=instances).status == 200
    assert gw.invoke(name, {"id": "warm"}).status == 200
    from nimbus.internal.v1 import invoker_pb2, invoker_pb2_grpc

    async def seen() -> int:
        counts = []
        for replica in ("invoker-1", "invoker-2"):
            async with cluster.channel(replica) as channel:
                stats = await invoker_pb2_grpc.InvokerControlStub(channel).GetStats(
                    invoker_pb2.GetStatsRequest(), timeout=2
                )
            counts.append(
                max((f.instances for f in stats.functions if f.function == name), default=0)
            )
        return min(counts)

    deadline = time.monotonic() + 30
    while await seen() < instances and time.monotonic() < deadline:
        await asyncio.sleep(0.2)


def span_s(records: list[dict[str, Any]]) -> float:
    def parse(text: str) -> float:
        return time.mktime(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + int(text[20:23]) / 1000

    return max(parse(r["updated_at"]) for r in records) - min(
        parse(r["created_at"]) for r in records
    )


async def test_2000_events_throughput(cluster, gw, capsys):
    name = unique("tput")
    await warm(cluster, gw, name, 12)
    ids, accept_s = await submit_all(gw, name, 2000)
    done = await wait_all_finished(gw, list(ids.values()), timeout_s=120, cluster=cluster)
    assert all(r["status"] == "SUCCEEDED" for r in done.values())
    completed_s = span_s(list(done.values()))
    with capsys.disabled():
        print(
            f"\n[async throughput] 2000 events accepted in {accept_s:.2f}s"
            f" ({2000 / accept_s:.0f}/s), completed in {completed_s:.2f}s"
            f" ({2000 / completed_s:.0f}/s);"
            f" extra runs: {sum(r['attempts'] - 1 for r in done.values())}"
        )


async def test_2000_events_through_two_invokers_with_one_killed(cluster, gw, capsys):
    name = unique("bulk")
    await warm(cluster, gw, name, 12)
    victim_pid = cluster.pid("invoker-1")
    killed: list[float] = []

    def kill() -> None:
        cluster.kill("invoker-1", signal.SIGKILL)
        killed.append(time.monotonic())

    ids, accept_s = await submit_all(gw, name, 2000, on_half=kill)
    assert killed, "the invoker was never killed"
    assert len(ids) == 2000
    done = await wait_all_finished(gw, list(ids.values()), timeout_s=120, cluster=cluster)
    wrong = [
        eid
        for eid, inv in ids.items()
        if done[inv]["status"] != "SUCCEEDED" or json.loads(done[inv]["result"]) != {"id": eid}
    ]
    assert not wrong, f"{len(wrong)} events did not succeed with their own id, e.g. {wrong[:5]}"
    duplicates = sum(r["attempts"] - 1 for r in done.values())
    runs_twice = sum(1 for r in done.values() if r["attempts"] > 1)
    completed_s = span_s(list(done.values()))
    with capsys.disabled():
        print(
            f"\n[async kill test] 2000 events accepted in {accept_s:.2f}s"
            f" ({2000 / accept_s:.0f}/s), all completed {completed_s:.2f}s after the first was"
            f" accepted ({2000 / completed_s:.0f}/s); invoker-1 (pid {victim_pid}) killed mid-way;"
            f" events run more than once: {runs_twice} ({duplicates} extra runs)"
        )
    await cluster.wait_healthy("invoker-1", timeout_s=30)


SLEEPY = {
    "main.py": (
        "import time\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('s', 0))\n"
        "    return {'slept': event.get('s', 0)}\n"
    )
}


async def test_async_work_leaves_room_for_sync_calls(gw):
    """max_concurrency 5 with a backlog of slow async events: sync calls still get a slot."""
    name = unique("share")
    assert gw.create(name, SLEEPY, timeout_s=10, max_concurrency=5).status == 200
    ids = [
        (await asyncio.to_thread(invoke_async, gw, name, {"s": 1.0}))[1]["invocation_id"]
        for _ in range(12)
    ]
    await asyncio.sleep(1.5)  # the backlog is running
    for _ in range(3):
        res = await asyncio.to_thread(gw.invoke, name, {"s": 0})
        assert res.status == 200, (res.status, res.body)
    for invocation_id in ids:
        record = await eventually(lambda i=invocation_id: finished(gw, i), timeout_s=60)
        assert record["status"] == "SUCCEEDED"


# -- retries, dead letters, replay, destinations --------------------------------------------


async def test_failing_function_is_retried_dead_lettered_and_replayed(cluster, gw):
    name = unique("fails")
    assert gw.create(name, FAILS).status == 200
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        # Destinations are subjects of the function's namespace: tenant.<namespace>.<subject>.
        alerts = await nc.subscribe(f"tenant.{namespace_of(gw)}.test.alerts.{name}")
        cfg = gw.request(
            "PUT",
            f"/v1/functions/{name}/event-invoke-config",
            {"on_failure": {"subject": f"test.alerts.{name}"}},
        )
        assert cfg.status == 200, cfg.body
        assert (
            gw.request("GET", f"/v1/functions/{name}/event-invoke-config").json()["on_failure"][
                "subject"
            ]
            == f"test.alerts.{name}"
        )
        _, body = await asyncio.to_thread(invoke_async, gw, name, {"n": 7})
        invocation_id = body["invocation_id"]
        record = await eventually(lambda: finished(gw, invocation_id))
        # max_retries defaults to 2: three runs in all.
        assert record["status"] == "FAILED" and record["attempts"] == 3
        assert json.loads(record["error_json"])["errorMessage"] == "always fails: 7"
        alert = json.loads((await alerts.next_msg(timeout=10)).data)
        assert alert["requestContext"]["condition"] == "RetriesExhausted" and alert[
            "requestPayload"
        ] == {"n": 7}
    finally:
        await nc.close()

    letters = gw.request("GET", f"/v1/functions/{name}/deadletters").json()
    assert [dl["invocation_id"] for dl in letters["dead_letters"]] == [invocation_id]
    letter = letters["dead_letters"][0]
    assert (
        json.loads(letter["event_json"]) == {"n": 7}
        and letter["attempts"] == 3
        and letter["reason"] == "retries_exhausted"
    )

    # Fix the function, then replay: the same invocation runs again and succeeds.
    from base64 import b64encode

    fixed = gw.request(
        "PUT",
        f"/v1/functions/{name}/code",
        {"code": {"zip_base64": b64encode(zip_of(ECHO)).decode()}},
    )
    assert fixed.status == 200
    replay = gw.request(
        "POST", f"/v1/functions/{name}/deadletters:replay", {"invocation_ids": [invocation_id]}
    )
    assert replay.status == 200 and replay.json()["invocation_ids"] == [invocation_id]
    record = await eventually(
        lambda: (r := finished(gw, invocation_id)) and r["status"] == "SUCCEEDED" and r
    )
    assert json.loads(record["result_json"]) == {"n": 7} and record["attempts"] == 1
    assert gw.request("GET", f"/v1/functions/{name}/deadletters").json()["dead_letters"] == []
    assert (
        gw.request(
            "POST", f"/v1/functions/{name}/deadletters:replay", {"invocation_ids": [invocation_id]}
        ).status
        == 404
    )


async def test_max_retries_zero_dead_letters_the_first_failure(gw):
    name = unique("noretry")
    assert gw.create(name, FAILS).status == 200
    bad = gw.request("PUT", f"/v1/functions/{name}/event-invoke-config", {"max_retries": 9})
    assert bad.status == 400 and "max_retries" in bad.json()["message"]
    assert (
        gw.request("PUT", f"/v1/functions/{name}/event-invoke-config", {"max_retries": 0}).status
        == 200
    )
    _, body = await asyncio.to_thread(invoke_async, gw, name, {"n": 1})
    # The invokers see the config through an etcd watch; give it a moment.
    record = await eventually(lambda: finished(gw, body["invocation_id"]))
    assert record["status"] == "FAILED" and record["attempts"] == 1


# -- triggers -------------------------------------------------------------------------------


async def test_trigger_validation_names_the_field(gw):
    name = unique("trg")
    assert gw.create(name, ECHO).status == 200
    for body, field in (
        ({"type": "cron"}, "type"),
        ({"type": "timer", "schedule": "61 * * * *"}, "schedule"),
        ({"type": "subject"}, "subject"),
        ({"type": "subject", "subject": "nimbus.events.x"}, "subject"),
        ({"type": "http", "schedule": "@every 1s"}, "schedule"),
    ):
        res = gw.request("POST", f"/v1/functions/{name}/triggers", body)
        assert res.status == 400 and res.json()["message"].startswith(field), res.body
    assert (
        gw.request("POST", f"/v1/functions/{unique('ghost')}/triggers", {"type": "http"}).status
        == 404
    )
    first = gw.request("POST", f"/v1/functions/{name}/triggers", {"type": "http"})
    assert first.status == 200 and first.json()["id"] == "http"
    assert gw.request("POST", f"/v1/functions/{name}/triggers", {"type": "http"}).status == 409
    listed = gw.request("GET", f"/v1/functions/{name}/triggers").json()["triggers"]
    assert [t["type"] for t in listed] == ["http"]
    assert (
        gw.request("GET", f"/v1/functions/{name}/triggers/http").json()["url"]
        == first.json()["url"]
    )
    assert gw.request("DELETE", f"/v1/functions/{name}/triggers/http").status == 200
    assert gw.request("GET", f"/v1/functions/{name}/triggers/http").status == 404


async def test_timer_fires_once_per_tick_with_two_invokers(cluster, gw):
    name = unique("timer")
    assert gw.create(name, ECHO).status == 200
    out = f"test.timer.{name}"
    assert (
        gw.request(
            "PUT", f"/v1/functions/{name}/event-invoke-config", {"on_success": {"subject": out}}
        ).status
        == 200
    )
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        sub = await nc.subscribe(f"tenant.{namespace_of(gw)}.{out}")
        await asyncio.sleep(1.0)  # the invokers' watch sees the event config
        interval, intervals = 2, 5
        created = gw.request(
            "POST",
            f"/v1/functions/{name}/triggers",
            {"type": "timer", "schedule": f"@every {interval}s"},
        )
        assert created.status == 200, created.body
        await asyncio.sleep(interval * intervals)
        assert (
            gw.request("DELETE", f"/v1/functions/{name}/triggers/{created.json()['id']}").status
            == 200
        )
        await asyncio.sleep(2.0)  # runs already queued finish
        ticks: list[str] = []
        while True:
            try:
                msg = await sub.next_msg(timeout=0.5)
            except nats.errors.TimeoutError:
                break
            ticks.append(json.loads(msg.data)["requestPayload"]["time"])
        assert len(ticks) == len(set(ticks)), f"a tick ran twice: {ticks}"
        assert intervals - 1 <= len(ticks) <= intervals + 1, ticks
        # Deleted: no more ticks.
        await asyncio.sleep(interval * 1.5)
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.5)
    finally:
        await nc.close()


async def test_a_message_on_a_subject_runs_the_function(cluster, gw):
    name = unique("subj")
    assert gw.create(name, ECHO).status == 200
    ns = namespace_of(gw)
    subject, out = f"test.orders.{name}", f"test.done.{name}"
    assert (
        gw.request(
            "PUT", f"/v1/functions/{name}/event-invoke-config", {"on_success": {"subject": out}}
        ).status
        == 200
    )
    created = gw.request(
        "POST", f"/v1/functions/{name}/triggers", {"type": "subject", "subject": subject}
    )
    assert created.status == 200 and created.json()["subject"] == subject
    nc = await nats.connect(f"nats://127.0.0.1:{cluster.ports['nats']}", **cluster.nats_tls())
    try:
        done = await nc.subscribe(f"tenant.{ns}.{out}")
        js = nc.jetstream()
        deadline = time.monotonic() + 15
        while True:  # the invokers make the trigger's queue once their etcd watch delivers it
            try:
                await js.consumer_info(f"NIMBUS_SUBJECTS_{ns}", f"trigger-{created.json()['id']}")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        # Through the API with the key (its namespace's subject), and with a NATS client on the
        # wire subject: both run the function.
        published = gw.request("POST", f"/v1/subjects/{subject}:publish", raw=b'{"order": 42}')
        assert published.status == 200, published.body
        assert published.json()["subject"] == subject and int(published.json()["sequence"]) > 0
        await nc.publish(f"tenant.{ns}.{subject}", b"not json")
        await nc.flush()
        got = []
        for _ in range(2):
            got.append(json.loads((await done.next_msg(timeout=30)).data)["requestPayload"])
    finally:
        await nc.close()
    assert {"order": 42} in got
    assert {"subject": subject, "body": "not json", "isBase64Encoded": False} in got
    # Wildcards are not for publishing.
    assert gw.request("POST", "/v1/subjects/test.*:publish", raw=b"{}").status == 400


async def test_public_http_trigger_returns_the_functions_response(gw):
    name = unique("web")
    assert gw.create(name, HTTP_FN).status == 200
    ns = gw.request("GET", f"/v1/functions/{name}").json()["namespace"]
    path = f"/fn/{ns}/{name}"
    assert gw.request("GET", path, key=None).status == 404  # not opted in yet
    created = gw.request("POST", f"/v1/functions/{name}/triggers", {"type": "http"})
    assert created.status == 200 and created.json()["url"] == path

    def call() -> Any:
        res = gw.request("POST", f"{path}/orders?x=1", key=None, raw=b"hello")
        return res if res.status == 201 else None

    res = await eventually(call, timeout_s=15)
    assert res.headers["x-custom"] == "yes" and res.headers["content-type"] == "text/plain"
    # The path below the trigger's mount point (issue 24.3).
    assert res.body == b"POST /orders q=1 body=hello"
    assert res.headers["x-nimbus-request-id"]
    assert gw.request("DELETE", f"/v1/functions/{name}/triggers/http").status == 200
    await eventually(lambda: gw.request("GET", path, key=None).status == 404, timeout_s=15)


async def test_public_http_trigger_hides_function_errors(gw):
    name = unique("web-err")
    assert gw.create(name, FAILS).status == 200
    ns = gw.request("GET", f"/v1/functions/{name}").json()["namespace"]
    assert gw.request("POST", f"/v1/functions/{name}/triggers", {"type": "http"}).status == 200
    res = await eventually(
        lambda: (r := gw.request("GET", f"/fn/{ns}/{name}", key=None)).status == 502 and r,
        timeout_s=15,
    )
    assert (
        res.json() == {"message": "Internal server error"}
        and res.headers["x-nimbus-function-error"] == "Unhandled"
    )


# -- nats-server restart ----------------------------------------------------------------------


async def test_nats_restart_loses_nothing_accepted(cluster, gw):
    name = unique("natsk9")
    assert gw.create(name, ID_ECHO, timeout_s=10).status == 200
    assert gw.invoke(name, {"id": "warm"}).status == 200
    ids, _ = await submit_all(gw, name, 300)
    old = cluster.pid("nats")
    cluster.kill("nats", signal.SIGKILL)
    await eventually(lambda: cluster.pid("nats") not in (0, old), timeout_s=30)
    await cluster.wait_healthy("nats", timeout_s=30)
    done = await wait_all_finished(gw, list(ids.values()), timeout_s=90, cluster=cluster)
    assert all(
        done[inv]["status"] == "SUCCEEDED" and json.loads(done[inv]["result"]) == {"id": eid}
        for eid, inv in ids.items()
    )
    # Accepting works again after the restart.
    status, body = await asyncio.to_thread(invoke_async, gw, name, {"id": "after"})
    assert status == 200
    assert (await eventually(lambda: finished(gw, body["invocation_id"])))["status"] == "SUCCEEDED"
