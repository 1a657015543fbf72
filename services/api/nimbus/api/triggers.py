"""Triggers and the async event config of a function, behind the public API: validation, namespace
scoping, and the rule that both exist only while their function does.

A trigger or event config is written in one etcd transaction guarded by the function record's
revision, so it cannot outlive a function deleted at the same moment (the deletion clears
keys.owned_by_function). The invokers watch both and act on them.

A subject trigger's durable queue (nimbus.common.subjects) is made before the trigger is stored,
so every message published on its subject once the create has answered is kept for it, invokers
running or not. A queue left by a create that then failed is removed by the invokers' sweep.
"""

from __future__ import annotations

import re
import secrets
from typing import Protocol

from nimbus.common import validation
from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from nimbus.common.eventconfig import EventConfig, check_event_config
from nimbus.common.model import FunctionRecord
from nimbus.common.triggers import TriggerRecord, TriggerType, check_payload_format, check_trigger

MAX_TRIGGERS_PER_FUNCTION = 20
# The http trigger of a function has this id: one per function, enforced by the key itself.
HTTP_TRIGGER_ID = "http"
_TRIGGER_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
# A function updated between our read and our write makes the guard fail; read again this often.
_TRIES = 3


class SubjectQueues(Protocol):
    async def ensure(self, namespace: str, trigger_id: str, subject: str) -> None: ...


class FunctionReader(Protocol):
    async def get(self, namespace: str, name: str) -> FunctionRecord: ...


class TriggerStore(Protocol):
    async def create(self, record: TriggerRecord, function_revision: int) -> bool | None: ...
    async def list(self, namespace: str, name: str) -> list[TriggerRecord]: ...
    async def get(self, namespace: str, name: str, trigger_id: str) -> TriggerRecord | None: ...
    async def delete(self, namespace: str, name: str, trigger_id: str) -> bool: ...
    async def put_event_config(self, config: EventConfig, function_revision: int) -> bool: ...
    async def get_event_config(self, namespace: str, name: str) -> EventConfig | None: ...
    async def delete_event_config(self, namespace: str, name: str) -> bool: ...


def check_trigger_id(trigger_id: str) -> None:
    if not _TRIGGER_ID.fullmatch(trigger_id):
        raise InvalidArgument(
            f"id: {trigger_id!r} is not a trigger id (as `nimbus trigger list` shows)"
        )


class TriggersApi:
    def __init__(
        self,
        functions: FunctionReader,
        store: TriggerStore,
        clock: Clock,
        queues: SubjectQueues,
    ) -> None:
        self._functions = functions
        self._store = store
        self._clock = clock
        self._queues = queues

    async def create(
        self,
        who: Principal,
        name: str,
        type_: str,
        schedule: str,
        subject: str,
        qualifier: str,
        payload_format: str = "",
    ) -> TriggerRecord:
        """payload_format: an http trigger's event shape, "1.0" (the default) or "2.0"."""
        validation.check_name(name)
        payload_format = payload_format.strip()
        kind = check_trigger(type_, schedule.strip(), subject.strip(), qualifier, payload_format)
        http = kind == TriggerType.HTTP
        trigger_id = HTTP_TRIGGER_ID if http else secrets.token_hex(6)
        for _ in range(_TRIES):
            function = await self._functions.get(who.namespace, name)
            existing = await self._store.list(who.namespace, name)
            if len(existing) >= MAX_TRIGGERS_PER_FUNCTION:
                raise InvalidArgument(
                    f"triggers: function {name!r} already has {len(existing)}, the most it may have"
                )
            record = TriggerRecord(
                trigger_id=trigger_id,
                namespace=who.namespace,
                function=name,
                type=kind.value,
                schedule=" ".join(schedule.split()),
                subject=subject.strip(),
                qualifier=qualifier,
                created_at=iso(self._clock.now()),
                payload_format=check_payload_format(payload_format).value if http else "",
            )
            if kind == TriggerType.SUBJECT:
                await self._queues.ensure(who.namespace, trigger_id, record.subject)
            created = await self._store.create(record, function.revision)
            if created is None:
                raise AlreadyExists(f"function {name!r} already has an http trigger")
            if created:
                return record
        raise Conflict(f"function {name!r} kept changing; try again")

    async def list(self, who: Principal, name: str) -> list[TriggerRecord]:
        validation.check_name(name)
        await self._functions.get(who.namespace, name)
        return sorted(
            await self._store.list(who.namespace, name), key=lambda t: (t.created_at, t.trigger_id)
        )

    async def get(self, who: Principal, name: str, trigger_id: str) -> TriggerRecord:
        validation.check_name(name)
        check_trigger_id(trigger_id)
        record = await self._store.get(who.namespace, name, trigger_id)
        if record is None:
            raise NotFound(f"trigger {trigger_id!r} of function {name!r} not found")
        return record

    async def delete(self, who: Principal, name: str, trigger_id: str) -> None:
        validation.check_name(name)
        check_trigger_id(trigger_id)
        if not await self._store.delete(who.namespace, name, trigger_id):
            raise NotFound(f"trigger {trigger_id!r} of function {name!r} not found")

    async def put_event_config(self, who: Principal, name: str, config: EventConfig) -> EventConfig:
        validation.check_name(name)
        config = EventConfig(
            namespace=who.namespace,
            function=name,
            max_retries=config.max_retries,
            max_event_age_s=config.max_event_age_s,
            on_success=config.on_success,
            on_failure=config.on_failure,
            updated_at=iso(self._clock.now()),
        )
        check_event_config(config)
        for _ in range(_TRIES):
            function = await self._functions.get(who.namespace, name)
            if await self._store.put_event_config(config, function.revision):
                return config
        raise Conflict(f"function {name!r} kept changing; try again")

    async def get_event_config(self, who: Principal, name: str) -> EventConfig:
        validation.check_name(name)
        await self._functions.get(who.namespace, name)
        stored = await self._store.get_event_config(who.namespace, name)
        return stored if stored is not None else EventConfig(namespace=who.namespace, function=name)

    async def delete_event_config(self, who: Principal, name: str) -> None:
        validation.check_name(name)
        await self._functions.get(who.namespace, name)
        await self._store.delete_event_config(who.namespace, name)
