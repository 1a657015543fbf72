"""Rolling out an API release: v1 calls loop while replicas of the v2 release start, the weight of
v2 goes 0 -> 0.1 -> 0.5 -> 1 (`nimbus admin rollout`), and the replicas that serve only v1 stop.
Not one v1 call fails."""

from __future__ import annotations

import asyncio
import io
import signal
import threading
import time
import uuid

import grpc
import pytest
from nimbus.api.v1 import functions_pb2 as v1_pb
from nimbus.api.v1 import functions_pb2_grpc as v1_grpc
from nimbus.cli.main import main as cli
from replicas import envoy_counter, envoy_hosts, envoy_runtime, spawn_api, until

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.timeout(240)]

ECHO = {"main.py": "def handler(event, context):\n    return event\n"}


class V1Traffic:
    """v1 calls in a loop, REST and gRPC, from two threads; every failure is kept."""

    def __init__(self, gw, name: str) -> None:
        self.gw, self.name = gw, name
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._rest, daemon=True),
            threading.Thread(target=self._grpc, daemon=True),
        ]

    def _record(self, ok: bool, what: str) -> None:
        with self._lock:
            if ok:
                self.ok += 1
            else:
                self.failures.append(what)

    def _rest(self) -> None:
        while not self._stop.is_set():
            try:
                res = self.gw.request("GET", f"/v1/functions/{self.name}", timeout=10)
                self._record(
                    res.status == 200 and res.json()["name"] == self.name,
                    f"REST {res.status} {res.body[:200]!r}",
                )
            except Exception as err:
                self._record(False, f"REST {err!r}")

    def _grpc(self) -> None:
        meta = (("authorization", f"Bearer {self.gw.api_key}"),)
        with grpc.insecure_channel(f"127.0.0.1:{self.gw.port}") as channel:
            stub = v1_grpc.FunctionsStub(channel)
            while not self._stop.is_set():
                try:
                    got = stub.GetFunction(
                        v1_pb.GetFunctionRequest(name=self.name), metadata=meta, timeout=10
                    )
                    self._record(got.name == self.name, f"gRPC {got!r}")
                except grpc.RpcError as err:
                    self._record(False, f"gRPC {err.code().name}: {err.details()}")

    def __enter__(self) -> V1Traffic:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(20)


def admin(gw, *args: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli(
        ["admin", *args, "--endpoint", f"http://127.0.0.1:{gw.port}", "--api-key", gw.api_key],
        env={},
        stdout=out,
        stderr=err,
    )
    assert code == 0, err.getvalue()


async def set_weight(cluster, gw, weight: float) -> None:
    await asyncio.to_thread(admin, gw, "rollout", "api", "--version", "v2", "--weight", str(weight))
    want = str(round(weight * 1000))
    await until(
        lambda: envoy_runtime(cluster).get("nimbus.routes.api.v1.api_v2") == want,
        5,
        f"Envoy's api v1 route gives {want}/1000 to api_v2",
    )


async def test_rollout_v1_to_v2_fails_no_v1_call(cluster, gw):
    name = f"ro-{uuid.uuid4().hex[:8]}"
    assert gw.create(name, ECHO).status == 200
    old = [spawn_api(cluster, f"api-old-{i}-{uuid.uuid4().hex[:4]}", "v1") for i in (1, 2)]
    try:
        await until(
            lambda: all(envoy_hosts(cluster)["api_v1"].get(r.address) for r in old),
            30,
            "the v1-only replicas in Envoy's api_v1 cluster",
        )
        # Before the new release takes any traffic: every v1 call to the v1-only replicas.
        await set_weight(cluster, gw, 0.0)
        with V1Traffic(gw, name) as traffic:
            await asyncio.sleep(1.0)
            # The v2 release's replicas (re)start while v1 calls flow.
            for program in ("api-1", "api-2"):
                await asyncio.to_thread(cluster.stop_program, program)
            assert not envoy_hosts(cluster)["api_v2"]
            started = time.monotonic()
            for program in ("api-1", "api-2"):
                await asyncio.to_thread(cluster.start_program, program)
            await until(
                lambda: len([h for h in envoy_hosts(cluster)["api_v2"].values() if h]) == 2,
                30,
                "the v2 replicas in Envoy's api_v2 cluster",
            )
            print(
                f"\n[rollout] v2 replicas started and routed in {time.monotonic() - started:.1f} s"
            )
            seen: dict[float, tuple[int, int]] = {}
            for weight in (0.1, 0.5, 1.0):
                await set_weight(cluster, gw, weight)
                before = (
                    envoy_counter(cluster, "cluster.api_v1.upstream_rq_total"),
                    envoy_counter(cluster, "cluster.api_v2.upstream_rq_total"),
                )
                await asyncio.sleep(2.0)
                seen[weight] = (
                    envoy_counter(cluster, "cluster.api_v1.upstream_rq_total") - before[0],
                    envoy_counter(cluster, "cluster.api_v2.upstream_rq_total") - before[1],
                )
            print(f"[rollout] calls to (api_v1, api_v2) per weight of v2: {seen}")
            assert seen[0.1][1] > 0 and seen[0.1][0] > seen[0.1][1]
            assert seen[1.0][0] == 0 and seen[1.0][1] > 0
            # The replicas that serve only v1 drain and stop; v1 calls go on.
            for replica in old:
                assert await asyncio.to_thread(replica.stop, signal.SIGTERM) == 0
            await asyncio.sleep(1.0)
        print(f"[rollout] {traffic.ok} v1 calls, {len(traffic.failures)} failed")
        assert traffic.failures == [], traffic.failures[:5]
        assert traffic.ok > 50
        assert not envoy_hosts(cluster)["api_v1"]
    finally:
        for replica in old:
            replica.stop(signal.SIGKILL)
        await asyncio.to_thread(admin, gw, "rollout", "api", "--clear")
        for program in ("api-1", "api-2"):
            if cluster.state(program) != "RUNNING":
                await asyncio.to_thread(cluster.start_program, program)
            await cluster.wait_healthy(program, timeout_s=30)
