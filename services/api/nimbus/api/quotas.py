"""Namespace quotas: an admin sets them, a namespace's own keys may read them. The checks are in
nimbus.common.quotas: FunctionsApi applies the deploy-time ones, the invokers the call-time ones.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

from nimbus.common import validation
from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import PermissionDenied
from nimbus.common.quotas import Quotas, check_quotas


class QuotaStore(Protocol):
    async def get(self, namespace: str) -> Quotas | None: ...
    async def put(self, quotas: Quotas) -> None: ...


class QuotasApi:
    def __init__(self, store: QuotaStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def put(self, who: Principal, quotas: Quotas) -> Quotas:
        if not who.admin:
            raise PermissionDenied("an admin key is required to set a namespace's quotas")
        validation.check_namespace(quotas.namespace)
        check_quotas(quotas)
        stamped = dataclasses.replace(quotas, updated_at=iso(self._clock.now()))
        await self._store.put(stamped)
        return stamped

    async def get(self, who: Principal, namespace: str) -> Quotas:
        namespace = namespace or who.namespace
        validation.check_namespace(namespace)
        if namespace != who.namespace and not who.admin:
            raise PermissionDenied(f"this key may not read the quotas of namespace {namespace!r}")
        return await self._store.get(namespace) or Quotas(namespace)
