"""API key issuance: admins create keys for any namespace, others only plain keys for their own."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import auth
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import InvalidArgument, PermissionDenied

_NAMESPACE = re.compile(r"[a-z][a-z0-9-]{0,62}")


class KeyWriter(Protocol):
    async def store(self, key: str, record: auth.KeyRecord) -> None: ...


@dataclass(frozen=True, slots=True)
class IssuedKey:
    api_key: str
    record: auth.KeyRecord


class KeyIssuer:
    def __init__(self, writer: KeyWriter, clock: Clock) -> None:
        self._writer = writer
        self._clock = clock

    async def create(self, who: auth.Principal, namespace: str, description: str, admin: bool) -> IssuedKey:
        namespace = namespace or who.namespace
        if not _NAMESPACE.fullmatch(namespace):
            raise InvalidArgument(
                f"namespace: {namespace!r} must be 1-63 characters: a lowercase letter, then lowercase letters, digits or '-'"
            )
        if len(description) > 256:
            raise InvalidArgument(f"description: {len(description)} characters, over the limit of 256")
        if not who.admin and (namespace != who.namespace or admin):
            raise PermissionDenied("only an admin key may create keys for another namespace or admin keys")
        key = auth.new_key()
        record = auth.KeyRecord(
            key_id=secrets.token_hex(6), namespace=namespace, admin=admin, description=description, created_at=iso(self._clock.now())
        )
        await self._writer.store(key, record)
        return IssuedKey(key, record)
