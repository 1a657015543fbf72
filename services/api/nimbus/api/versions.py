"""Versions and aliases behind the public API: name checks and namespace scoping, then funcmgr."""

from __future__ import annotations

import builtins
from typing import Protocol

from nimbus.common import validation
from nimbus.common.auth import Principal
from nimbus.common.model import AliasRecord, VersionRecord


class VersionBackend(Protocol):
    async def publish(
        self, namespace: str, name: str, description: str, expected_revision: int
    ) -> VersionRecord: ...
    async def get_version(self, namespace: str, name: str, version: str) -> VersionRecord: ...
    async def list_versions(self, namespace: str, name: str) -> list[VersionRecord]: ...
    async def delete_version(self, namespace: str, name: str, version: str) -> None: ...
    async def put_alias(
        self,
        namespace: str,
        name: str,
        alias: str,
        version: str,
        routing_version: str,
        weight: float,
        description: str,
    ) -> AliasRecord: ...
    async def get_alias(self, namespace: str, name: str, alias: str) -> AliasRecord: ...
    async def list_aliases(self, namespace: str, name: str) -> list[AliasRecord]: ...
    async def delete_alias(self, namespace: str, name: str, alias: str) -> None: ...


class VersionsApi:
    def __init__(self, backend: VersionBackend) -> None:
        self._backend = backend

    async def publish(
        self, who: Principal, name: str, description: str, expected_revision: int
    ) -> VersionRecord:
        validation.check_name(name)
        return await self._backend.publish(who.namespace, name, description, expected_revision)

    async def get(self, who: Principal, name: str, version: str) -> VersionRecord:
        validation.check_name(name)
        return await self._backend.get_version(who.namespace, name, version)

    async def list(self, who: Principal, name: str) -> list[VersionRecord]:
        validation.check_name(name)
        return await self._backend.list_versions(who.namespace, name)

    async def delete(self, who: Principal, name: str, version: str) -> None:
        validation.check_name(name)
        await self._backend.delete_version(who.namespace, name, version)

    async def put_alias(
        self,
        who: Principal,
        name: str,
        alias: str,
        version: str,
        routing_version: str,
        weight: float,
        description: str,
    ) -> AliasRecord:
        validation.check_name(name)
        return await self._backend.put_alias(
            who.namespace, name, alias, version, routing_version, weight, description
        )

    async def get_alias(self, who: Principal, name: str, alias: str) -> AliasRecord:
        validation.check_name(name)
        return await self._backend.get_alias(who.namespace, name, alias)

    async def list_aliases(self, who: Principal, name: str) -> builtins.list[AliasRecord]:
        validation.check_name(name)
        return await self._backend.list_aliases(who.namespace, name)

    async def delete_alias(self, who: Principal, name: str, alias: str) -> None:
        validation.check_name(name)
        await self._backend.delete_alias(who.namespace, name, alias)
