"""The control-plane core behind the public API: validation and namespace scoping.

It takes typed arguments and the caller's Principal; it never sees a proto.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from nimbus.common import validation
from nimbus.common.auth import Principal
from nimbus.common.model import ConfigFields, FunctionConfig, FunctionRecord
from nimbus.common.quotas import Quotas, check_deploy

DEFAULT_MEMORY_MB = 128
DEFAULT_TIMEOUT_S = 3
DEFAULT_KEEP_ALIVE_S = 600


class FunctionBackend(Protocol):
    async def create(
        self, namespace: str, name: str, config: FunctionConfig, code_zip: bytes
    ) -> FunctionRecord: ...
    async def get(self, namespace: str, name: str) -> FunctionRecord: ...
    async def list(self, namespace: str) -> list[FunctionRecord]: ...
    async def update_config(
        self,
        namespace: str,
        name: str,
        changes: ConfigFields,
        replace_env: bool,
        expected_revision: int,
    ) -> FunctionRecord: ...
    async def update_code(
        self, namespace: str, name: str, code_zip: bytes, expected_revision: int
    ) -> FunctionRecord: ...
    async def delete(self, namespace: str, name: str) -> None: ...


class QuotaSource(Protocol):
    async def get(self, namespace: str) -> Quotas | None: ...


# Each check takes the value of its own field (an int, a str, a mapping): hence Any.
_FIELD_CHECKS: dict[str, Callable[[Any], None]] = {
    "memory_mb": lambda v: validation.check_range("memory_mb", v, validation.MEMORY_MB),
    "timeout_s": lambda v: validation.check_range("timeout_s", v, validation.TIMEOUT_S),
    "env": validation.check_env,
    "description": validation.check_description,
    "max_concurrency": lambda v: validation.check_range(
        "max_concurrency", v, (0, validation.MAX_CONCURRENCY_MAX)
    ),
    "min_instances": lambda v: validation.check_range(
        "min_instances", v, (0, validation.MIN_INSTANCES_MAX)
    ),
    "runtime": validation.check_runtime,
    "keep_alive_s": lambda v: validation.check_range("keep_alive_s", v, validation.KEEP_ALIVE_S),
    "tags": validation.check_tags,
    # The runtime half (not `provided`) is funcmgr's check of the merged config.
    "instance_concurrency": lambda v: validation.check_range(
        "instance_concurrency", v, validation.INSTANCE_CONCURRENCY
    ),
}


class FunctionsApi:
    def __init__(self, backend: FunctionBackend, quotas: QuotaSource | None = None) -> None:
        self._backend = backend
        self._quotas = quotas

    async def _check_quotas(
        self, namespace: str, name: str, min_instances: int, memory_mb: int
    ) -> None:
        """Over a namespace quota, Throttled (429) naming it. Two deploys at the same instant
        may both pass: a quota bounds what a tenant keeps, not a race between its own calls."""
        if self._quotas is None:
            return
        quotas = await self._quotas.get(namespace)
        if quotas is None or not (quotas.max_functions or quotas.max_warm_mb):
            return
        check_deploy(quotas, await self._backend.list(namespace), name, min_instances, memory_mb)

    async def create(
        self, who: Principal, name: str, fields: ConfigFields, code_zip: bytes
    ) -> FunctionRecord:
        validation.check_name(name)
        config = FunctionConfig(
            runtime=str(fields.get("runtime", "")),
            handler=str(fields.get("handler", "")),
            memory_mb=int(fields.get("memory_mb", DEFAULT_MEMORY_MB)),
            timeout_s=int(fields.get("timeout_s", DEFAULT_TIMEOUT_S)),
            env=dict(fields.get("env", {})),
            description=str(fields.get("description", "")),
            max_concurrency=int(fields.get("max_concurrency", 0)),
            min_instances=int(fields.get("min_instances", 0)),
            keep_alive_s=int(fields.get("keep_alive_s", DEFAULT_KEEP_ALIVE_S)),
            tags=dict(fields.get("tags", {})),
            instance_concurrency=int(fields.get("instance_concurrency", 1)),
        )
        validation.check_config(config)
        await self._check_quotas(who.namespace, name, config.min_instances, config.memory_mb)
        return await self._backend.create(who.namespace, name, config, code_zip)

    async def get(self, who: Principal, name: str) -> FunctionRecord:
        validation.check_name(name)
        return await self._backend.get(who.namespace, name)

    async def list(self, who: Principal) -> list[FunctionRecord]:
        return await self._backend.list(who.namespace)

    async def update_config(
        self,
        who: Principal,
        name: str,
        changes: ConfigFields,
        replace_env: bool,
        expected_revision: int,
    ) -> FunctionRecord:
        validation.check_name(name)
        for field, value in changes.items():
            check = _FIELD_CHECKS.get(field)
            if check is not None:
                check(value)
        # The handler's shape depends on the runtime, and both may change at once: funcmgr checks
        # the merged config, this only catches an empty handler early.
        if "handler" in changes and not changes["handler"]:
            validation.check_handler("", "")
        if "min_instances" in changes or "memory_mb" in changes:
            current = (await self._backend.get(who.namespace, name)).config
            await self._check_quotas(
                who.namespace,
                name,
                int(changes.get("min_instances", current.min_instances)),
                int(changes.get("memory_mb", current.memory_mb)),
            )
        return await self._backend.update_config(
            who.namespace, name, changes, replace_env, expected_revision
        )

    async def update_code(
        self, who: Principal, name: str, code_zip: bytes, expected_revision: int
    ) -> FunctionRecord:
        validation.check_name(name)
        return await self._backend.update_code(who.namespace, name, code_zip, expected_revision)

    async def delete(self, who: Principal, name: str) -> None:
        validation.check_name(name)
        await self._backend.delete(who.namespace, name)
