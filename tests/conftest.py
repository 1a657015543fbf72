"""Servers every tier may share, started once per session on free loopback ports: etcd, NATS and
Redis (tests.support.servers). Tests stay apart inside them: `nats_url` is a NATS account of the
test's own (its own JetStream streams), `redis_url` a Redis database of its own, and in etcd each
test writes under node ids and function names it made up. A test that kills or restarts a server
starts a private one instead (the same classes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.servers import EtcdServer, NatsServer, RedisServer


@pytest.fixture(scope="session")
def etcd_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """host:port of the session's etcd."""
    server = EtcdServer(tmp_path_factory.mktemp("etcd") / "data").start()
    try:
        yield server.endpoint
    finally:
        server.kill9()


@pytest.fixture(scope="session")
def shared_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """The session's nats-server; account() hands out isolated accounts."""
    server = NatsServer(tmp_path_factory.mktemp("nats") / "js", accounts=64).start()
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """The session's redis-server; database() hands out isolated databases."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), databases=256).start()
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture
def nats_url(shared_nats: NatsServer) -> str:
    """A NATS account of this test's own on the shared server."""
    return shared_nats.account()


@pytest.fixture
def redis_url(shared_redis: RedisServer) -> str:
    """A Redis database of this test's own on the shared server."""
    return shared_redis.database()
