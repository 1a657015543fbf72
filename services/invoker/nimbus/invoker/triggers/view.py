"""The invoker's view of the triggers in etcd (a watch cache), indexed for each trigger kind."""

from __future__ import annotations

from typing import Protocol

from nimbus.common.triggers import TriggerRecord, TriggerType


class TriggerSource(Protocol):
    items: dict[bytes, TriggerRecord]

    async def wait_changed(self, timeout_s: float) -> None: ...


def of_type(source: TriggerSource, kind: TriggerType) -> list[TriggerRecord]:
    return [t for t in source.items.values() if t.type == kind]


class HttpIndex:
    """(namespace, function) → its http trigger, kept current as a watch-cache listener, so the
    public listener's lookup is one dict read."""

    def __init__(self) -> None:
        self._by_key: dict[bytes, TriggerRecord] = {}
        self._by_function: dict[tuple[str, str], TriggerRecord] = {}

    def on_change(self, key: bytes, record: TriggerRecord | None) -> None:
        old = self._by_key.pop(key, None)
        if old is not None and self._by_function.get((old.namespace, old.function)) == old:
            del self._by_function[(old.namespace, old.function)]
        if record is not None and record.type == TriggerType.HTTP:
            self._by_key[key] = record
            self._by_function[(record.namespace, record.function)] = record

    def get(self, namespace: str, function: str) -> TriggerRecord | None:
        return self._by_function.get((namespace, function))
