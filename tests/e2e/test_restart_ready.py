"""`make down` then `make up` with the same home, ten times: after each ready line, a function
deployed before answers its very first call (issue 16.7). The previous run's node lease and
instance records, and Envoy's upstreams, must never make that call a 503."""

from __future__ import annotations

from pathlib import Path

import pytest
from nimbus.cluster import LocalCluster
from support import Gateway

from tests.support import free_port

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]

RESTARTS = 10


async def test_the_first_call_after_every_restart_is_served(tmp_path: Path) -> None:
    port = free_port()
    cluster = LocalCluster(home=tmp_path / "home", gateway_port=port, env={})
    await cluster.start(timeout_s=120)
    try:
        gw = Gateway(port, cluster.credentials["api_key"])
        files = {"main.py": "def handler(event, context):\n    return event.get('n')\n"}
        assert gw.create("hello", files).status == 200
        assert gw.invoke("hello", {"n": 0}).body == b"0"
    finally:
        await cluster.stop()
    for n in range(1, RESTARTS + 1):
        cluster = LocalCluster(home=tmp_path / "home", gateway_port=port, env={})
        await cluster.start(timeout_s=120)
        try:
            res = gw.invoke("hello", {"n": n})
            assert (res.status, res.body) == (200, str(n).encode()), (n, res.status, res.body)
        finally:
            await cluster.stop()
