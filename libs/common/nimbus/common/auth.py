"""API keys: generation, hashing, the etcd-backed key store and the check api and invoker share.

Only the sha256 of a key is stored; a key belongs to one namespace and sees nothing of another.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import secrets
from dataclasses import asdict, dataclass

from nimbus.common import keys
from nimbus.common.clock import Clock, SystemClock
from nimbus.common.errors import Unauthenticated
from nimbus.common.etcd import KV, Etcd, WatchCache

KEY_PREFIX = "nmb_"
# Valid Authorization headers an Authenticator remembers, before it starts over.
_SEEN_MAX = 1024
# Unknown keys (by hash) it remembers for a while, so a flood of made-up keys costs one etcd read
# per key and period, not one per request. A key created since is in the watch cache, which is
# looked at first: it works as soon as the watch delivers it.
UNKNOWN_TTL_S = 5.0
_UNKNOWN_MAX = 8192


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: str
    namespace: str
    admin: bool
    description: str
    created_at: str

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> KeyRecord:
        data = json.loads(raw)
        return cls(**{k: data[k] for k in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Principal:
    namespace: str
    key_id: str
    admin: bool


principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)


def current_principal() -> Principal:
    principal = principal_var.get()
    if principal is None:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    return principal


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_bearer(header: str | None) -> str:
    if not header:
        raise Unauthenticated("missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("malformed Authorization header: expected 'Bearer <key>'")
    return token.strip()


async def store_key(etcd: Etcd, key: str, record: KeyRecord) -> None:
    await etcd.put(keys.api_key(hash_key(key)), record.to_json())


class Authenticator:
    """Checks bearer keys against the etcd key store, from a watch-backed cache.

    A miss falls through to one etcd read, so a key created a moment ago on another replica works
    before the watch has delivered it.
    """

    def __init__(self, etcd: Etcd, clock: Clock | None = None) -> None:
        self._etcd = etcd
        self._clock = clock or SystemClock()
        # etcd key of an unknown key → when to ask etcd again (monotonic)
        self._unknown: dict[bytes, float] = {}
        self.cache: WatchCache[KeyRecord] = WatchCache(etcd, keys.api_keys_prefix(), _decode)
        # Authorization header → (its key's etcd key, the cached record it found, the Principal).
        # A hit still looks the record up in the cache, so a deleted or changed key counts at once;
        # it only skips parsing, hashing and building the Principal again (~4 µs a call).
        self._seen: dict[str, tuple[bytes, KeyRecord, Principal]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if authorization:
            seen = self._seen.get(authorization)
            if seen is not None and self.cache.items.get(seen[0]) is seen[1]:
                return seen[2]
        key = parse_bearer(authorization)
        etcd_key = keys.api_key(hash_key(key))
        record = self.cache.items.get(etcd_key)
        if record is None:
            now = self._clock.monotonic()
            if self._unknown.get(etcd_key, 0.0) > now:
                raise Unauthenticated("invalid API key")
            kv = await self._etcd.get(etcd_key)
            if kv is None:
                if len(self._unknown) >= _UNKNOWN_MAX:
                    self._unknown = {k: t for k, t in self._unknown.items() if t > now}
                    if len(self._unknown) >= _UNKNOWN_MAX:
                        self._unknown.clear()
                self._unknown[etcd_key] = now + UNKNOWN_TTL_S
                raise Unauthenticated("invalid API key")
            record = KeyRecord.from_json(kv.value)
            return Principal(namespace=record.namespace, key_id=record.key_id, admin=record.admin)
        principal = Principal(namespace=record.namespace, key_id=record.key_id, admin=record.admin)
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen[authorization] = (etcd_key, record, principal)  # type: ignore[index]
        return principal


def _decode(kv: KV) -> KeyRecord:
    return KeyRecord.from_json(kv.value)
