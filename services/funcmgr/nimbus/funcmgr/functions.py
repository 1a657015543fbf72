"""Function metadata and code: the funcmgr core. Raises only NimbusError subclasses."""

from __future__ import annotations

import dataclasses
import random
from typing import Protocol

from nimbus.common.clock import Clock, iso
from nimbus.common.errors import AlreadyExists, Conflict, NotFound
from nimbus.common.model import ConfigFields, FunctionConfig, FunctionRecord
from nimbus.common.validation import check_config, check_name
from nimbus.funcmgr.package import PackageLimits, check_package, handler_warnings

# A concurrent writer can win between our read and our revision-checked write; when the caller did
# not pin a revision we retry (with a little random backoff) so concurrent PATCHes all land. With
# N writers the last one needs up to N attempts.
_UPDATE_ATTEMPTS = 64


class FunctionStore(Protocol):
    async def get(self, namespace: str, name: str) -> FunctionRecord | None: ...
    async def list(self, namespace: str) -> list[FunctionRecord]: ...
    async def create(self, record: FunctionRecord) -> int | None: ...
    async def replace(self, record: FunctionRecord, expected_revision: int) -> int | None: ...
    async def delete(self, namespace: str, name: str, revision: int) -> bool: ...


class CodeStore(Protocol):
    async def put(self, data: bytes) -> str: ...
    async def get(self, sha256: str) -> bytes | None: ...


class FunctionManager:
    def __init__(
        self, store: FunctionStore, code: CodeStore, limits: PackageLimits, clock: Clock
    ) -> None:
        self._store = store
        self._code = code
        self._limits = limits
        self._clock = clock

    async def create(
        self, namespace: str, name: str, config: FunctionConfig, code_zip: bytes
    ) -> FunctionRecord:
        check_name(name)
        check_config(config)
        check_package(code_zip, config.runtime, config.handler, self._limits)
        if await self._store.get(namespace, name) is not None:
            raise AlreadyExists(f"function {name!r} already exists")
        sha = await self._code.put(code_zip)
        now = iso(self._clock.now())
        record = FunctionRecord(namespace, name, config, sha, len(code_zip), now, now)
        revision = await self._store.create(record)
        if revision is None:
            raise AlreadyExists(f"function {name!r} already exists")
        warnings = handler_warnings(code_zip, config.runtime, config.handler)
        return dataclasses.replace(record, revision=revision, warnings=tuple(warnings))

    async def get(self, namespace: str, name: str) -> FunctionRecord:
        record = await self._store.get(namespace, name)
        if record is None:
            raise NotFound(f"function {name!r} not found in namespace {namespace!r}")
        return record

    async def list(self, namespace: str) -> list[FunctionRecord]:
        return sorted(await self._store.list(namespace), key=lambda r: r.name)

    async def update_config(
        self,
        namespace: str,
        name: str,
        changes: ConfigFields,
        replace_env: bool,
        expected_revision: int,
    ) -> FunctionRecord:
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self.get(namespace, name)
            self._check_revision(current, expected_revision)
            fields = changes.copy()
            if "env" in fields and not replace_env:
                fields["env"] = {**current.config.env, **fields["env"]}
            config = dataclasses.replace(current.config, **fields)
            check_config(config)
            updated = dataclasses.replace(current, config=config, updated_at=iso(self._clock.now()))
            revision = await self._store.replace(updated, current.revision)
            if revision is not None:
                warnings: tuple[str, ...] = ()
                if "handler" in changes or "runtime" in changes:
                    warnings = await self._warnings_of(updated)
                return dataclasses.replace(updated, revision=revision, warnings=warnings)
            if expected_revision:
                break
            await self._backoff()
        raise Conflict(f"function {name!r} changed concurrently; read it again and retry")

    async def _warnings_of(self, record: FunctionRecord) -> tuple[str, ...]:
        """The handler check of a record's stored code (after a handler or runtime change)."""
        try:
            code = await self._code.get(record.code_sha256)
        except OSError:
            return ()
        if code is None:
            return ()
        return tuple(handler_warnings(code, record.config.runtime, record.config.handler))

    async def _backoff(self) -> None:
        await self._clock.sleep(random.uniform(0.0, 0.01))

    async def update_code(
        self, namespace: str, name: str, code_zip: bytes, expected_revision: int
    ) -> FunctionRecord:
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self.get(namespace, name)
            self._check_revision(current, expected_revision)
            check_package(code_zip, current.config.runtime, current.config.handler, self._limits)
            sha = await self._code.put(code_zip)
            updated = dataclasses.replace(
                current, code_sha256=sha, code_size=len(code_zip), updated_at=iso(self._clock.now())
            )
            revision = await self._store.replace(updated, current.revision)
            if revision is not None:
                warnings = handler_warnings(
                    code_zip, current.config.runtime, current.config.handler
                )
                return dataclasses.replace(updated, revision=revision, warnings=tuple(warnings))
            if expected_revision:
                break
            await self._backoff()
        raise Conflict(f"function {name!r} changed concurrently; read it again and retry")

    async def delete(self, namespace: str, name: str) -> None:
        """Removes the function with its versions,
        aliases and triggers; the name is free at once."""
        for _ in range(_UPDATE_ATTEMPTS):
            current = await self.get(namespace, name)
            if await self._store.delete(namespace, name, current.revision):
                return
        raise Conflict(f"function {name!r} changed concurrently; retry the delete")

    @staticmethod
    def _check_revision(current: FunctionRecord, expected_revision: int) -> None:
        if expected_revision and current.revision != expected_revision:
            raise Conflict(
                f"function {current.name!r} is at revision {current.revision}, "
                f"not the expected {expected_revision}"
            )
