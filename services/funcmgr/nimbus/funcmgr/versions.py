"""Published versions and aliases: the funcmgr core. Raises only NimbusError subclasses.

Every change of one function's versions or aliases rewrites its meta key in the same etcd
transaction, so "delete a version no alias points to" and "point an alias at an existing
version" can never interleave into a dangling alias.
"""

from __future__ import annotations

import builtins
import dataclasses
import re
from typing import Protocol

from nimbus.common.clock import Clock, iso
from nimbus.common.errors import Conflict, InvalidArgument, NotFound
from nimbus.common.model import LATEST, AliasRecord, FunctionRecord, VersionRecord
from nimbus.funcmgr.stores.functions import FunctionMeta

_ATTEMPTS = 5
_ALIAS = re.compile(r"(?!^\d+$)[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
_VERSION = re.compile(r"[1-9]\d{0,9}")


class VersionStore(Protocol):
    async def get(self, namespace: str, name: str) -> FunctionRecord | None: ...
    async def meta(self, namespace: str, name: str) -> FunctionMeta: ...
    async def get_version(
        self, namespace: str, name: str, version: str
    ) -> VersionRecord | None: ...
    async def list_versions(self, namespace: str, name: str) -> list[VersionRecord]: ...
    async def add_version(
        self, record: FunctionRecord, meta: FunctionMeta, version: VersionRecord
    ) -> int | None: ...
    async def delete_version(
        self, namespace: str, name: str, version: str, meta: FunctionMeta
    ) -> bool: ...
    async def get_alias(self, namespace: str, name: str, alias: str) -> AliasRecord | None: ...
    async def list_aliases(self, namespace: str, name: str) -> list[AliasRecord]: ...
    async def put_alias(
        self, alias: AliasRecord, meta: FunctionMeta, versions: list[VersionRecord]
    ) -> int | None: ...
    async def delete_alias(
        self, namespace: str, name: str, alias: str, meta: FunctionMeta
    ) -> bool: ...


def check_version_number(version: str) -> None:
    if not _VERSION.fullmatch(version):
        raise InvalidArgument(
            f"version: {version!r} must be a published version number such as '1'"
        )


def check_alias_name(alias: str) -> None:
    if not _ALIAS.fullmatch(alias):
        raise InvalidArgument(
            f"alias: {alias!r} must be 1-128 letters, digits, '-' or '_', "
            "starting with a letter or digit, and not only digits"
        )


def check_routing(version: str, routing_version: str, weight: float) -> None:
    if not routing_version:
        if weight:
            raise InvalidArgument("routing.version: required when routing.weight is set")
        return
    check_version_number(routing_version)
    if not 0.0 <= weight <= 1.0:
        raise InvalidArgument(f"routing.weight: {weight} must be between 0.0 and 1.0")
    if routing_version == version:
        raise InvalidArgument("routing.version: must differ from the alias's version")
    if version == LATEST:
        raise InvalidArgument("routing: an alias of $LATEST cannot route to a second version")


class VersionManager:
    def __init__(self, store: VersionStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def _function(self, namespace: str, name: str) -> FunctionRecord:
        record = await self._store.get(namespace, name)
        if record is None:
            raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
        return record

    async def publish(
        self, namespace: str, name: str, description: str, expected_revision: int
    ) -> VersionRecord:
        if len(description) > 256:
            raise InvalidArgument(
                f"description: {len(description)} characters, over the limit of 256"
            )
        for _ in range(_ATTEMPTS):
            record = await self._function(namespace, name)
            if expected_revision and record.revision != expected_revision:
                raise Conflict(
                    f"function {name!r} is at revision {record.revision}, "
                    f"not the expected {expected_revision}"
                )
            meta = await self._store.meta(namespace, name)
            if meta.last_version:
                last = await self._store.get_version(namespace, name, str(meta.last_version))
                # As Lambda does: publishing an unchanged $LATEST returns the latest version.
                if (
                    last is not None
                    and last.code_sha256 == record.code_sha256
                    and last.config == record.config
                ):
                    return last
            version = VersionRecord(
                namespace,
                name,
                str(meta.last_version + 1),
                description,
                record.config,
                record.code_sha256,
                record.code_size,
                iso(self._clock.now()),
            )
            revision = await self._store.add_version(record, meta, version)
            if revision is not None:
                return dataclasses.replace(version, revision=revision)
            if expected_revision:
                break
        raise Conflict(f"function {name!r} changed while publishing; retry")

    async def get(self, namespace: str, name: str, version: str) -> VersionRecord:
        check_version_number(version)
        await self._function(namespace, name)
        found = await self._store.get_version(namespace, name, version)
        if found is None:
            raise NotFound(f"version {version!r} of function {name!r} not found")
        return found

    async def list(self, namespace: str, name: str) -> list[VersionRecord]:
        await self._function(namespace, name)
        return sorted(
            await self._store.list_versions(namespace, name), key=lambda v: int(v.version)
        )

    async def delete(self, namespace: str, name: str, version: str) -> None:
        await self.get(namespace, name, version)
        for _ in range(_ATTEMPTS):
            meta = await self._store.meta(namespace, name)
            users = [
                a.alias
                for a in await self._store.list_aliases(namespace, name)
                if version in (a.version, a.routing_version)
            ]
            if users:
                raise Conflict(
                    f"version {version} is used by alias(es) "
                    f"{', '.join(sorted(users))}; move them first"
                )
            if await self._store.delete_version(namespace, name, version, meta):
                return
        raise Conflict(f"function {name!r} changed while deleting version {version}; retry")

    async def put_alias(
        self,
        namespace: str,
        name: str,
        alias: str,
        version: str,
        routing_version: str,
        weight: float,
        description: str,
    ) -> AliasRecord:
        check_alias_name(alias)
        if version != LATEST:
            check_version_number(version)
        check_routing(version, routing_version, weight)
        if len(description) > 256:
            raise InvalidArgument(
                f"description: {len(description)} characters, over the limit of 256"
            )
        await self._function(namespace, name)
        for _ in range(_ATTEMPTS):
            meta = await self._store.meta(namespace, name)
            targets = []
            for v in (version, routing_version):
                if v and v != LATEST:
                    found = await self._store.get_version(namespace, name, v)
                    if found is None:
                        raise NotFound(f"version {v!r} of function {name!r} not found")
                    targets.append(found)
            record = AliasRecord(
                namespace,
                name,
                alias,
                version,
                routing_version,
                weight if routing_version else 0.0,
                description,
            )
            revision = await self._store.put_alias(record, meta, targets)
            if revision is not None:
                return dataclasses.replace(record, revision=revision)
        raise Conflict(f"function {name!r} changed while setting alias {alias!r}; retry")

    async def get_alias(self, namespace: str, name: str, alias: str) -> AliasRecord:
        check_alias_name(alias)
        await self._function(namespace, name)
        found = await self._store.get_alias(namespace, name, alias)
        if found is None:
            raise NotFound(f"alias {alias!r} of function {name!r} not found")
        return found

    async def list_aliases(self, namespace: str, name: str) -> builtins.list[AliasRecord]:
        await self._function(namespace, name)
        return sorted(await self._store.list_aliases(namespace, name), key=lambda a: a.alias)

    async def delete_alias(self, namespace: str, name: str, alias: str) -> None:
        await self.get_alias(namespace, name, alias)
        for _ in range(_ATTEMPTS):
            meta = await self._store.meta(namespace, name)
            if await self._store.delete_alias(namespace, name, alias, meta):
                return
        raise Conflict(f"function {name!r} changed while deleting alias {alias!r}; retry")
