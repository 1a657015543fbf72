"""A second start with the same home keeps every deployed function and the credentials."""

from __future__ import annotations

import uuid

import pytest
from nimbus.cluster import LocalCluster
from support import Gateway

from tests.support import free_port

pytestmark = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.slow]


async def test_functions_survive_a_full_restart(tmp_path):
    port = free_port()
    name = f"keep-{uuid.uuid4().hex[:8]}"
    first = LocalCluster(home=tmp_path, gateway_port=port)
    await first.start(timeout_s=90)
    try:
        gw = Gateway(port, first.credentials["api_key"])
        assert (
            gw.create(name, {"main.py": "def handler(e, c):\n    return 'still here'\n"}).status
            == 200
        )
        assert gw.invoke(name, {}).json() == "still here"
    finally:
        await first.stop()

    second = LocalCluster(home=tmp_path, gateway_port=port)
    await second.start(timeout_s=90)
    try:
        assert second.credentials["api_key"] == gw.api_key
        assert gw.invoke(name, {}).json() == "still here"
    finally:
        await second.stop()
