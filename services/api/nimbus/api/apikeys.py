"""API keys and namespaces: only an admin key creates, lists and revokes keys.

A namespace exists as soon as a key names it; keys are stored by their sha256 only.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import auth, validation
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import InvalidArgument, NotFound, PermissionDenied

_KEY_ID = re.compile(r"[0-9a-f]{12}")


class KeyStore(Protocol):
    async def store(self, key: str, record: auth.KeyRecord) -> None: ...
    async def list(self) -> list[auth.KeyRecord]: ...
    async def delete(self, key_id: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: str
    record: auth.KeyRecord


def _require_admin(who: auth.Principal, action: str) -> None:
    if not who.admin:
        raise PermissionDenied(f"only an admin key may {action}")


class KeyIssuer:
    def __init__(self, store: KeyStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def create(
        self, who: auth.Principal, namespace: str, description: str, admin: bool
    ) -> IssuedKey:
        _require_admin(who, "create keys")
        namespace = namespace or who.namespace
        validation.check_namespace(namespace)
        if len(description) > 256:
            raise InvalidArgument(
                f"description: {len(description)} characters, over the limit of 256"
            )
        key = auth.new_key()
        record = auth.KeyRecord(
            key_id=secrets.token_hex(6),
            namespace=namespace,
            admin=admin,
            description=description,
            created_at=iso(self._clock.now()),
        )
        await self._store.store(key, record)
        return IssuedKey(key, record)

    async def list(self, who: auth.Principal) -> list[auth.KeyRecord]:
        _require_admin(who, "list keys")
        return sorted(await self._store.list(), key=lambda r: (r.namespace, r.created_at))

    async def revoke(self, who: auth.Principal, key_id: str) -> None:
        _require_admin(who, "revoke keys")
        if not _KEY_ID.fullmatch(key_id):
            raise InvalidArgument(
                f"key_id: {key_id!r} must be the 12 hex digits `nimbus keys list` shows"
            )
        if not await self._store.delete(key_id):
            raise NotFound(f"key {key_id!r} not found")
