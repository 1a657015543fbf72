"""Traces and metrics across the real processes of a small cluster of its own (one node), with
OTEL_EXPORTER_OTLP_ENDPOINT pointing at an OTLP/gRPC trace receiver inside this test process.

One sync call started cold must be one trace that runs through the gateway's traceparent, the
invoker, the scheduler's RequestInstance, the node-agent's CreateInstance and Invoke, and the
instance call; an async call must be one trace from its accept, through JetStream, to the consumer's
run on the node. The Prometheus endpoints of every replica (found through the service registry)
must show the function's series move by exactly the calls made.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import threading
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from nimbus.cluster import LocalCluster
from nimbus.common import keys
from nimbus.common.etcd import Etcd
from nimbus.common.registry import ServiceEndpoint
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families
from support import Gateway, Response

from tests.support import free_port, until

pytestmark = pytest.mark.asyncio(loop_scope="session")

ECHO = {
    "main.py": (
        "import time\n"
        "def handler(event, context):\n"
        "    time.sleep(event.get('s', 0))\n"
        "    return event\n"
    )
}
SERVICES = ("api", "funcmgr", "gateway", "invoker", "node-agent", "scheduler")


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    trace_id: str
    span_id: str
    parent_id: str
    name: str


class TraceReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC collector that keeps every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []

    async def Export(self, request: Any, context: Any) -> Any:
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    self.spans.append(
                        ReceivedSpan(
                            attrs.get("service.name", ""),
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            s.name,
                        )
                    )
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [s for s in self.spans if s.trace_id == trace_id]


@dataclass
class Stack:
    cluster: LocalCluster
    gw: Gateway
    receiver: TraceReceiver


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    receiver = TraceReceiver()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    home: Path = tmp_path_factory.mktemp("nimbus-telemetry")
    env = {
        "NIMBUS_NODES": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    cluster = LocalCluster(home=home, gateway_port=free_port(), env=env)
    try:
        await cluster.start(timeout_s=120)
        yield Stack(
            cluster, Gateway(cluster.gateway_port, cluster.credentials["api_key"]), receiver
        )
    finally:
        await cluster.stop()
        await server.stop(0)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def post(gw: Gateway, path: str, body: bytes, headers: dict[str, str] | None = None) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=60)
    try:
        conn.request(
            "POST",
            path,
            body=body,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {gw.api_key}",
                **(headers or {}),
            },
        )
        res = conn.getresponse()
        return Response(res.status, {k.lower(): v for k, v in res.getheaders()}, res.read())
    finally:
        conn.close()


async def whole_trace(
    receiver: TraceReceiver, trace_id: str, root_parent: str, names: set[str]
) -> list[ReceivedSpan]:
    """The trace's spans once the expected names are in and every parent has arrived (processes
    export their batches independently)."""

    def ready() -> list[ReceivedSpan] | None:
        spans = receiver.trace(trace_id)
        ids = {s.span_id for s in spans}
        complete = all(s.parent_id in ids or s.parent_id == root_parent for s in spans)
        return spans if complete and names <= {s.name for s in spans} else None

    spans: list[ReceivedSpan] = await until(ready, 30, "the whole trace", 0.2)
    return spans


def assert_one_tree(
    spans: list[ReceivedSpan], root_parent: str
) -> tuple[ReceivedSpan, dict[str, list[ReceivedSpan]]]:
    """One root, whose parent is root_parent (the caller's span, or none); every other span's parent
    is in the trace. Returns the root and the children of each span id."""
    ids = {s.span_id for s in spans}
    assert len(ids) == len(spans), "span ids repeat"
    roots = [s for s in spans if s.parent_id not in ids]
    assert len(roots) == 1 and roots[0].parent_id == root_parent, roots
    children: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for s in spans:
        children[s.parent_id].append(s)
    return roots[0], children


def has_path(
    children: dict[str, list[ReceivedSpan]], start: ReceivedSpan, path: list[tuple[str, str]]
) -> bool:
    """Whether a chain of descendants of start has these (service, span name) pairs, in order,
    each the child of the one before."""
    if not path:
        return True
    service, name = path[0]
    return any(
        has_path(children, c, path[1:])
        for c in children[start.span_id]
        if c.name == name and c.service == service
    )


async def test_a_cold_then_warm_sync_call_is_one_trace_each(stack: Stack) -> None:
    name = unique("traced")
    assert stack.gw.create(name, ECHO).status == 200
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    cold = await asyncio.to_thread(
        post,
        stack.gw,
        f"/v1/functions/{name}:invoke",
        b'{"n": 1}',
        {"traceparent": f"00-{client_trace}-{client_span}-01"},
    )
    assert cold.status == 200 and cold.headers["x-nimbus-cold-start"] == "true", cold
    # The gateway passes the client's traceparent on: the call joins the client's trace.
    assert cold.headers["x-nimbus-trace-id"] == client_trace

    expected = {
        "nimbus.api.v1.Invocations/Invoke",
        "invoker.dispatch",
        "nimbus.internal.v1.Scheduler/RequestInstance",
        "nimbus.internal.v1.NodeAgent/CreateInstance",
        "instance.init",
        "nimbus.internal.v1.NodeAgent/Invoke",
        "instance.call",
    }
    spans = await whole_trace(stack.receiver, client_trace, client_span, expected)
    assert {s.service for s in spans} == {"invoker", "scheduler", "node-agent"}
    invoke, children = assert_one_tree(spans, root_parent=client_span)
    assert (invoke.name, invoke.service) == ("nimbus.api.v1.Invocations/Invoke", "invoker")
    assert has_path(
        children,
        invoke,
        [
            ("invoker", "invoker.dispatch"),
            ("scheduler", "nimbus.internal.v1.Scheduler/RequestInstance"),
            ("node-agent", "nimbus.internal.v1.NodeAgent/CreateInstance"),
            ("node-agent", "instance.init"),
        ],
    )
    assert has_path(
        children,
        invoke,
        [("node-agent", "nimbus.internal.v1.NodeAgent/Invoke"), ("node-agent", "instance.call")],
    )

    # Warm, and without a traceparent: a trace of its own, named in the reply, with no start in it.
    # (The other invoker may not have seen the new instance yet: its first call can start one too.)
    for _ in range(5):
        warm = await asyncio.to_thread(post, stack.gw, f"/v1/functions/{name}:invoke", b'{"n": 2}')
        assert warm.status == 200
        if warm.headers["x-nimbus-cold-start"] == "false":
            break
    assert warm.headers["x-nimbus-cold-start"] == "false"
    trace_id = warm.headers["x-nimbus-trace-id"]
    assert len(trace_id) == 32 and trace_id != client_trace
    spans = await whole_trace(stack.receiver, trace_id, "", {"instance.call"})
    invoke, children = assert_one_tree(spans, root_parent="")
    assert invoke.name == "nimbus.api.v1.Invocations/Invoke"
    assert has_path(
        children,
        invoke,
        [("node-agent", "nimbus.internal.v1.NodeAgent/Invoke"), ("node-agent", "instance.call")],
    )
    assert not {"nimbus.internal.v1.Scheduler/RequestInstance", "instance.init"} & {
        s.name for s in spans
    }

    # The log lines a call causes carry its trace id (on a good call only the start logs).
    def started_lines() -> list[dict[str, Any]]:
        lines = []
        for path in stack.cluster.layout.logs.glob("node-agent*.log"):
            for raw in path.read_text(errors="replace").splitlines():
                if raw.startswith("{") and name in raw:
                    line = json.loads(raw)
                    if line.get("msg") == "instance ready":
                        lines.append(line)
        return lines

    ready = await until(started_lines, 10, "the services' start lines", 0.2)
    assert (client_trace, name) in [(line["trace_id"], line["function"]) for line in ready]


async def test_an_async_call_is_one_trace_from_accept_to_the_run(stack: Stack) -> None:
    name = unique("traced-async")
    assert stack.gw.create(name, ECHO).status == 200
    client_trace, client_span = secrets.token_hex(16), secrets.token_hex(8)
    accepted = await asyncio.to_thread(
        post,
        stack.gw,
        f"/v1/functions/{name}:invokeAsync",
        b'{"n": 3}',
        {"traceparent": f"00-{client_trace}-{client_span}-01"},
    )
    assert accepted.status == 200, accepted
    assert accepted.headers["x-nimbus-trace-id"] == client_trace
    invocation_id = accepted.json()["invocation_id"]

    def finished() -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", stack.gw.port, timeout=10)
        try:
            conn.request(
                "GET",
                f"/v1/invocations/{invocation_id}",
                headers={"Authorization": f"Bearer {stack.gw.api_key}"},
            )
            return json.loads(conn.getresponse().read()).get("status") == "SUCCEEDED"
        finally:
            conn.close()

    await until(lambda: finished(), 60, "the calls to finish", 0.3)
    spans = await whole_trace(
        stack.receiver, client_trace, client_span, {"async.run", "instance.call"}
    )
    accept, children = assert_one_tree(spans, root_parent=client_span)
    assert (accept.name, accept.service) == ("nimbus.api.v1.Invocations/InvokeAsync", "invoker")
    assert has_path(
        children,
        accept,
        [("invoker", "async.publish"), ("invoker", "async.run"), ("invoker", "invoker.dispatch")],
    )
    assert has_path(
        children,
        accept,
        [
            ("invoker", "async.publish"),
            ("invoker", "async.run"),
            ("node-agent", "nimbus.internal.v1.NodeAgent/Invoke"),
            ("node-agent", "instance.call"),
        ],
    )
    assert [s.name for s in spans].count("async.run") == 1  # it ran once: no redelivery


# -- metrics ------------------------------------------------------------------------------------


async def registry_records(cluster: LocalCluster) -> list[ServiceEndpoint]:
    etcd = Etcd("127.0.0.1", cluster.ports["etcd"], cluster.operator_identity)
    try:
        kvs, _ = await etcd.get_prefix(keys.registry_prefix())
    finally:
        await etcd.close()
    return [ServiceEndpoint.from_json(kv.value) for kv in kvs]


def scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/metrics")
        res = conn.getresponse()
        assert res.status == 200 and res.getheader("Content-Type", "").startswith("text/plain")
        text = res.read().decode()
    finally:
        conn.close()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(
    scrapes: list[dict[tuple[str, tuple[tuple[str, str], ...]], float]], name: str, **labels: str
) -> float:
    return sum(
        v
        for s in scrapes
        for (n, ls), v in s.items()
        if n == name and labels.items() <= dict(ls).items()
    )


async def test_every_replica_serves_metrics_and_the_function_series_move(stack: Stack) -> None:
    records = await registry_records(stack.cluster)
    by_service: dict[str, list[str]] = defaultdict(list)
    for r in records:
        assert r.metrics_address, f"{r.replica} registered no metrics address"
        by_service[r.service].append(r.metrics_address)
    assert set(SERVICES) <= set(by_service), by_service
    for service in SERVICES:
        for address in by_service[service]:
            scraped = await asyncio.to_thread(scrape, address)
            assert any(
                n == "nimbus_grpc_server_requests_total" or n == "process_cpu_seconds_total"
                for n, _ in scraped
            ), f"{service} at {address}"

    def invokers() -> list[dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
        return [scrape(a) for a in by_service["invoker"]]

    name = unique("metered")
    assert stack.gw.create(name, ECHO, max_concurrency=1).status == 200
    fn = {"function": name}
    calls = 3
    for i in range(calls):
        assert (await asyncio.to_thread(stack.gw.invoke, name, {"n": i})).status == 200
    after = await asyncio.to_thread(invokers)
    assert total(after, "nimbus_invocations_total", **fn, outcome="success") == calls
    assert total(after, "nimbus_invocations_total", **fn, outcome="throttled") == 0
    # The first call starts an instance; the other invoker may start one more if its watch has not
    # shown it the first yet.
    cold = total(after, "nimbus_cold_starts_total", **fn)
    assert 1 <= cold <= 2 and total(after, "nimbus_init_duration_seconds_count", **fn) == cold
    assert total(after, "nimbus_invocation_duration_seconds_count", **fn) == calls

    # max_concurrency=1: while one call runs (the concurrency gauge shows it), the next is a 429.
    slow: list[Response] = []
    runner = threading.Thread(target=lambda: slow.append(stack.gw.invoke(name, {"s": 1.5})))
    runner.start()
    try:
        await until(
            lambda: total(invokers(), "nimbus_concurrent_executions", **fn) == 1,
            10,
            "one execution in flight",
            0.05,
        )
        refused = await asyncio.to_thread(stack.gw.invoke, name, {"n": "x"})
        # While the call runs its instance is BUSY on the node and recorded in etcd.
        nodes = [await asyncio.to_thread(scrape, a) for a in by_service["node-agent"]]
        schedulers = [await asyncio.to_thread(scrape, a) for a in by_service["scheduler"]]
    finally:
        await asyncio.to_thread(runner.join, 30)
    assert (
        refused.status == 429
        and slow[0].status == 200
        and "x-nimbus-function-error" not in slow[0].headers
    )
    calls += 1
    after = await asyncio.to_thread(invokers)
    assert total(after, "nimbus_invocations_total", **fn, outcome="success") == calls
    assert total(after, "nimbus_invocations_total", **fn, outcome="throttled") == 1
    assert total(after, "nimbus_throttles_total", **fn) == 1

    assert total(nodes, "nimbus_node_instances", state="BUSY") >= 1, [
        (labels, v)
        for n in nodes
        for (metric, labels), v in n.items()
        if metric == "nimbus_node_instances"
    ]
    assert total(nodes, "nimbus_instance_starts_total", outcome="ok") >= 1
    assert total(schedulers, "nimbus_scheduler_leader") == 1
    assert max(total([s], "nimbus_scheduler_instances", function=name) for s in schedulers) >= 1
    assert (
        total(
            after,
            "nimbus_grpc_server_requests_total",
            method="nimbus.api.v1.Invocations/Invoke",
            code="OK",
        )
        >= calls
    )
