import pytest
from nimbus.api.apikeys import KeyIssuer
from nimbus.common.auth import KeyRecord, Principal
from nimbus.common.clock import FakeClock
from nimbus.common.errors import InvalidArgument, NotFound, PermissionDenied


class FakeKeyStore:
    def __init__(self):
        self.records: dict[str, KeyRecord] = {}

    async def store(self, key, record):
        self.records[key] = record

    async def list(self):
        return list(self.records.values())

    async def delete(self, key_id):
        for key, record in list(self.records.items()):
            if record.key_id == key_id:
                del self.records[key]
                return True
        return False


ADMIN = Principal("default", "a" * 12, True)
TENANT = Principal("tenant", "b" * 12, False)


async def test_admin_creates_lists_and_revokes():
    store = FakeKeyStore()
    issuer = KeyIssuer(store, FakeClock(0.0, advance_on_sleep=False))
    issued = await issuer.create(ADMIN, "team-a", "ci", False)
    assert issued.api_key.startswith("nmb_") and issued.record.namespace == "team-a"
    assert [r.key_id for r in await issuer.list(ADMIN)] == [issued.record.key_id]
    await issuer.revoke(ADMIN, issued.record.key_id)
    assert await issuer.list(ADMIN) == []
    with pytest.raises(NotFound):
        await issuer.revoke(ADMIN, issued.record.key_id)


@pytest.mark.parametrize("action", ["create", "list", "revoke"])
async def test_non_admin_keys_may_not_manage_keys(action):
    issuer = KeyIssuer(FakeKeyStore(), FakeClock(0.0, advance_on_sleep=False))
    call = {
        "create": lambda: issuer.create(TENANT, "tenant", "", False),
        "list": lambda: issuer.list(TENANT),
        "revoke": lambda: issuer.revoke(TENANT, "c" * 12),
    }[action]
    with pytest.raises(PermissionDenied):
        await call()


@pytest.mark.parametrize("namespace", ["Upper", "1abc", "a_b", "x" * 64])
async def test_bad_namespace_names(namespace):
    with pytest.raises(InvalidArgument, match="^namespace: "):
        await KeyIssuer(FakeKeyStore(), FakeClock(0.0, advance_on_sleep=False)).create(
            ADMIN, namespace, "", False
        )


class NoEtcd:
    async def get(self, key):
        return None


async def test_authenticator_remembers_a_header_but_follows_the_key_store():
    from nimbus.common import keys as etcd_keys
    from nimbus.common.auth import Authenticator, hash_key
    from nimbus.common.errors import Unauthenticated

    auth = Authenticator(NoEtcd())  # type: ignore[arg-type]
    etcd_key = etcd_keys.api_key(hash_key("nmb_k"))
    auth.cache.items[etcd_key] = KeyRecord("k1", "team", False, "", "")
    first = await auth.authenticate("Bearer nmb_k")
    assert first == Principal("team", "k1", False)
    assert await auth.authenticate("Bearer nmb_k") is first
    assert await auth.authenticate("bearer  nmb_k ") == first  # another spelling of the same key
    auth.cache.items[etcd_key] = KeyRecord("k1", "team", True, "", "")  # the key changed
    assert (await auth.authenticate("Bearer nmb_k")).admin
    del auth.cache.items[etcd_key]  # the key was deleted
    with pytest.raises(Unauthenticated):
        await auth.authenticate("Bearer nmb_k")
    for bad in (None, "", "Basic x"):
        with pytest.raises(Unauthenticated):
            await auth.authenticate(bad)


class CountingEtcd:
    def __init__(self) -> None:
        self.gets = 0

    async def get(self, key):
        self.gets += 1
        return None


async def test_unknown_keys_cost_one_etcd_read_per_period_not_per_request():
    from nimbus.common import keys as etcd_keys
    from nimbus.common.auth import UNKNOWN_TTL_S, Authenticator, hash_key
    from nimbus.common.errors import Unauthenticated

    class Clock:
        t = 100.0

        def monotonic(self) -> float:
            return self.t

    etcd, clock = CountingEtcd(), Clock()
    auth = Authenticator(etcd, clock)  # type: ignore[arg-type]
    for _ in range(1000):
        with pytest.raises(Unauthenticated):
            await auth.authenticate("Bearer nmb_made_up")
    assert etcd.gets == 1
    clock.t += UNKNOWN_TTL_S + 0.1
    with pytest.raises(Unauthenticated):
        await auth.authenticate("Bearer nmb_made_up")
    assert etcd.gets == 2
    # The key is created (the watch delivers it): it works at once, remembered miss or not.
    auth.cache.items[etcd_keys.api_key(hash_key("nmb_made_up"))] = KeyRecord(
        "k9", "t", False, "", ""
    )
    assert (await auth.authenticate("Bearer nmb_made_up")).key_id == "k9"
