"""Fixtures of the integration tier. etcd, NATS and Redis come from tests/conftest.py (one of each
per session); here are the node-agent tests' etcd client, FetchCode peer and agent, one of each per
module (an agent's node id and home are its own, so modules never see each other's instances)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio
from nimbus.common import mtls
from nimbus.common.etcd import Etcd
from nimbus.internal.v1 import funcmgr_pb2_grpc

from tests.support.nodeagent import Agent, CodeServer, start_agent

# The tier's servers (tests/conftest.py) are plaintext servers of the tests' own, not the
# cluster's: the adapters this process runs against them speak plaintext too. A test that needs
# the cluster's PKI installs an identity of its own (mtls.reset_for_tests(identity)).
mtls.reset_for_tests(None)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def etcd(etcd_endpoint: str) -> AsyncIterator[Etcd]:
    """A client of the session's etcd."""
    host, port = etcd_endpoint.split(":")
    client = Etcd(host, int(port))
    await client.wait_ready(deadline_s=20)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def code_server() -> AsyncIterator[tuple[str, CodeServer]]:
    """TEST SCAFFOLDING for the peer service: FunctionManager.FetchCode of the test's zips."""
    server = grpc.aio.server()
    servicer = CodeServer()
    funcmgr_pb2_grpc.add_FunctionManagerServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def agent(
    tmp_path_factory: pytest.TempPathFactory,
    etcd_endpoint: str,
    etcd: Etcd,
    code_server: tuple[str, CodeServer],
) -> AsyncIterator[Agent]:
    """The module's node-agent, a real process under a node id of its own."""
    a = await start_agent(tmp_path_factory.mktemp("agents"), etcd_endpoint, code_server[0])
    try:
        yield a
    finally:
        await a.stop()
