"""A rolling restart of every api and invoker replica, one by one, under steady sync load fails
no call: SIGTERM takes the replica out of the registry (so out of Envoy's endpoints) before it
stops accepting calls, in-flight calls finish within the grace, and the restarted replica joins
again before the next one goes."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid

import pytest
from replicas import envoy_hosts, until

pytestmark = [
    pytest.mark.asyncio(loop_scope="session"),
    pytest.mark.timeout(240),
    pytest.mark.slow,
]

ECHO = {"main.py": "def handler(event, context):\n    return event\n"}
SLOW = {
    "main.py": (
        "import time\ndef handler(event, context):\n    time.sleep(event['s'])\n    return event\n"
    )
}


class Load:
    """Sync calls in a loop from several threads: fast invokes, slow invokes (always one in
    flight at an invoker), and control-plane reads."""

    def __init__(self, gw, echo: str, slow: str) -> None:
        self.gw = gw
        self.ok: dict[str, int] = {"invoke": 0, "slow": 0, "get": 0}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            *(
                threading.Thread(
                    target=self._loop,
                    args=(
                        "invoke",
                        lambda i: gw.invoke(echo, {"i": i}, timeout=30),
                        lambda r, i: r.json() == {"i": i},
                    ),
                    daemon=True,
                )
                for _ in range(2)
            ),
            *(
                threading.Thread(
                    target=self._loop,
                    args=(
                        "slow",
                        lambda i: gw.invoke(slow, {"s": 0.4, "i": i}, timeout=30),
                        lambda r, i: r.json() == {"s": 0.4, "i": i},
                    ),
                    daemon=True,
                )
                for _ in range(2)
            ),
            threading.Thread(
                target=self._loop,
                args=(
                    "get",
                    lambda i: gw.request("GET", f"/v1/functions/{echo}", timeout=30),
                    lambda r, i: r.json()["name"] == echo,
                ),
                daemon=True,
            ),
        ]

    def _loop(self, kind, call, good) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                res = call(i)
                ok = (
                    res.status == 200
                    and not res.headers.get("x-nimbus-function-error")
                    and good(res, i)
                )
                what = f"{kind} {res.status} {res.body[:200]!r}"
            except Exception as err:
                ok, what = False, f"{kind} {err!r}"
            with self._lock:
                if ok:
                    self.ok[kind] += 1
                else:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {what}")

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)


async def test_rolling_restart_of_api_and_invokers_fails_no_call(cluster, gw):
    echo, slow = f"rr-{uuid.uuid4().hex[:8]}", f"rr-slow-{uuid.uuid4().hex[:8]}"
    assert gw.create(echo, ECHO).status == 200
    assert gw.create(slow, SLOW, timeout_s=30).status == 200
    assert (
        gw.invoke(echo, {"i": 0}).status == 200 and gw.invoke(slow, {"s": 0, "i": 0}).status == 200
    )
    times: dict[str, float] = {}
    with Load(gw, echo, slow) as load:
        await asyncio.sleep(1.0)
        for program in ("api-1", "api-2", "invoker-1", "invoker-2"):
            cluster_name = "api_v2" if program.startswith("api") else "invoker_v2"
            address = f"127.0.0.1:{cluster.ports[program]}"
            old_pid = cluster.pid(program)
            started = time.monotonic()
            await asyncio.to_thread(cluster.stop_program, program)
            assert address not in envoy_hosts(cluster)[cluster_name]
            await asyncio.to_thread(cluster.start_program, program)
            assert cluster.pid(program) != old_pid
            await until(
                lambda name=cluster_name, at=address: envoy_hosts(cluster)[name].get(at),
                30,
                f"{program} routed again",
            )
            times[program] = time.monotonic() - started
            await asyncio.sleep(1.0)
    print(
        "\n[rolling restart] seconds from SIGTERM to routed again:"
        f" {json.dumps({k: round(v, 1) for k, v in times.items()})}; "
        f"calls ok: {load.ok}, failed: {len(load.failures)}"
    )
    assert load.failures == [], load.failures[:10]
    assert load.ok["invoke"] > 50 and load.ok["slow"] > 10 and load.ok["get"] > 20
