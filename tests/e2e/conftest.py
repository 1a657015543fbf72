"""A real local cluster (etcd, NATS, Redis, Envoy and every service) per test session,
started by the same launcher as `make up`, in a temp home on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nimbus.cluster import LocalCluster
from support import Gateway

from tests.support import free_port


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalCluster]:
    home: Path = tmp_path_factory.mktemp("nimbus-home")
    env = {
        # A fast blob collector, so the garbage-collection test sees it work within seconds.
        "NIMBUS_BLOB_GC_S": "1",
        "NIMBUS_BLOB_GC_GRACE_S": "2",
        # Two nodes, for placement and node-failure tests.
        "NIMBUS_NODES": "2",
        # Short autoscaler windows, so scale-down is seen within a test's patience.
        "NIMBUS_SCALE_STABLE_WINDOW_S": "6",
        "NIMBUS_SCALE_PANIC_WINDOW_S": "2",
        # Async path: a dead invoker's events move on after 5 s; retries start at 0.2 s.
        "NIMBUS_ASYNC_ACK_WAIT_S": "5",
        "NIMBUS_ASYNC_RETRY_BASE_S": "0.2",
        # A log budget the fairness test's flood outgrows within seconds (per namespace).
        "NIMBUS_LOG_MAX_MB": "128",
    }
    c = LocalCluster(home=home, gateway_port=free_port(), env=env)
    await c.start(timeout_s=90)
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture(scope="session")
def gw(cluster: LocalCluster) -> Gateway:
    return Gateway(int(cluster.gateway_url.rsplit(":", 1)[1]), cluster.credentials["api_key"])
