"""Registry records, their config, and the admin API's rollout checks."""

from __future__ import annotations

import pytest
from nimbus.api.rollouts import AdminApi, check_rollout
from nimbus.common import keys
from nimbus.common.auth import Principal
from nimbus.common.clock import FakeClock
from nimbus.common.config import ConfigError
from nimbus.common.errors import InvalidArgument, NotFound, PermissionDenied
from nimbus.common.registry import (
    RegistryConfig,
    Rollout,
    ServiceEndpoint,
    advertise_address,
    parse_api_versions,
    release_of,
)


def test_endpoint_record_round_trips_and_ignores_unknown_fields():
    record = ServiceEndpoint(
        "api", "api-1", "127.0.0.1:7101", ("v1", "v2"), "SERVING", "2026-01-01T00:00:00.000Z", 42
    )
    assert ServiceEndpoint.from_json(record.to_json()) == record
    assert record.release == "v2"
    newer = (
        b'{"service": "api", "replica": "x", "address": "1.2.3.4:5", "api_versions": ["v1"],'
        b' "zone": "b"}'
    )
    assert ServiceEndpoint.from_json(newer).release == "v1"
    assert Rollout.from_json(Rollout("api", "v2", 0.1).to_json()) == Rollout("api", "v2", 0.1)


def test_keys():
    assert keys.service_endpoint("api", "api-1") == b"/nimbus/registry/api/api-1"
    assert keys.service_endpoint("api", "api-1").startswith(keys.registry_prefix("api"))
    assert keys.registry_prefix("api").startswith(keys.registry_prefix())
    assert keys.rollout("api").startswith(keys.rollouts_prefix())


@pytest.mark.parametrize(
    "raw,want", [("", ("v1", "v2")), ("v1", ("v1",)), ("v2, v1", ("v1", "v2")), ("v2", ("v2",))]
)
def test_api_versions(raw, want):
    assert parse_api_versions({"NIMBUS_API_VERSIONS": raw}) == want


@pytest.mark.parametrize("raw", ["v3", "v1,x", " , "])
def test_api_versions_refused(raw):
    with pytest.raises(ConfigError, match="NIMBUS_API_VERSIONS"):
        parse_api_versions({"NIMBUS_API_VERSIONS": raw})


def test_release_is_the_newest_known_version():
    assert release_of(("v1",)) == "v1" and release_of(("v2", "v1")) == "v2" and release_of(()) == ""


def test_registry_config_documented_example():
    cfg = RegistryConfig.from_env(
        {
            "NIMBUS_REGISTRY_TTL_S": "3",
            "NIMBUS_ADVERTISE_ADDR": "10.0.0.5:7101",
            "NIMBUS_DEREGISTER_WAIT_S": "0.5",
            "NIMBUS_ETCD_ENDPOINT": "etcd:2379",
            "NIMBUS_REPLICA": "api-1",
        },
        "api",
    )
    assert (cfg.enabled, cfg.ttl_s, cfg.advertise_addr, cfg.deregister_wait_s) == (
        True,
        3,
        "10.0.0.5:7101",
        0.5,
    )
    assert (cfg.etcd_host, cfg.etcd_port, cfg.replica) == ("etcd", 2379, "api-1")
    assert RegistryConfig.from_env({}, "api").replica == "api"
    with pytest.raises(ConfigError, match="NIMBUS_REGISTRY_TTL_S"):
        RegistryConfig.from_env({"NIMBUS_REGISTRY_TTL_S": "1"}, "api")
    with pytest.raises(ConfigError, match="NIMBUS_REGISTRY"):
        RegistryConfig.from_env({"NIMBUS_REGISTRY": "yes"}, "api")


def test_advertise_address():
    assert advertise_address("127.0.0.1:7101") == "127.0.0.1:7101"
    assert advertise_address("0.0.0.0:7101", "10.1.2.3:7101") == "10.1.2.3:7101"
    host, _, port = advertise_address("0.0.0.0:7101").rpartition(":")
    assert port == "7101" and host != "0.0.0.0"


@pytest.mark.parametrize(
    "service,version,weight,field",
    [
        ("funcmgr", "v2", 0.1, "service"),
        ("api", "v9", 0.1, "version"),
        ("api", "v2", 1.5, "weight"),
        ("api", "v2", -0.1, "weight"),
    ],
)
def test_rollout_checks(service, version, weight, field):
    with pytest.raises(InvalidArgument, match=field):
        check_rollout(service, version, weight)


class FakeStore:
    def __init__(self) -> None:
        self.saved: dict[str, Rollout] = {}

    async def endpoints(self, service):
        return [ServiceEndpoint("api", "b", "x:1"), ServiceEndpoint("api", "a", "x:2")]

    async def rollouts(self):
        return list(self.saved.values())

    async def put_rollout(self, rollout):
        self.saved[rollout.service] = rollout

    async def delete_rollout(self, service):
        return self.saved.pop(service, None) is not None


async def test_admin_api_is_for_admins_only():
    api = AdminApi(FakeStore(), FakeClock(0.0))
    admin, user = Principal("default", "k1", True), Principal("team", "k2", False)
    with pytest.raises(PermissionDenied):
        await api.set_rollout(user, "api", "v2", 0.5)
    with pytest.raises(PermissionDenied):
        await api.endpoints(user, "")
    stored = await api.set_rollout(admin, "api", "v2", 0.5)
    assert stored.updated_at == "1970-01-01T00:00:00.000Z"
    assert await api.rollouts(admin) == [stored]
    assert [e.replica for e in await api.endpoints(admin, "api")] == ["a", "b"]
    await api.delete_rollout(admin, "api")
    with pytest.raises(NotFound):
        await api.delete_rollout(admin, "api")
