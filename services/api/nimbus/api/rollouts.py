"""The cluster's admin operations behind API v2's Admin service: the service registry and the
nodes (read), and how API releases share traffic (rollouts). Admin keys only."""

from __future__ import annotations

from typing import Protocol

from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import InvalidArgument, NotFound, PermissionDenied
from nimbus.common.model import NodeRecord
from nimbus.common.registry import API_RELEASES, Rollout, ServiceEndpoint

# The services the gateway routes public calls to, by API release.
ROUTED_SERVICES = ("api", "invoker")


class RegistryStore(Protocol):
    async def endpoints(self, service: str | None) -> list[ServiceEndpoint]: ...
    async def rollouts(self) -> list[Rollout]: ...
    async def put_rollout(self, rollout: Rollout) -> None: ...
    async def delete_rollout(self, service: str) -> bool: ...
    async def nodes(self) -> list[NodeRecord]: ...


def _admin_only(who: Principal) -> None:
    if not who.admin:
        raise PermissionDenied("an admin key is required to operate the cluster")


def check_rollout(service: str, version: str, weight: float) -> None:
    if service not in ROUTED_SERVICES:
        raise InvalidArgument(
            f"service: {service!r} is not routed by the gateway; "
            f"use one of {', '.join(ROUTED_SERVICES)}"
        )
    if version not in API_RELEASES:
        raise InvalidArgument(
            f"version: {version!r} is not an API release; use one of {', '.join(API_RELEASES)}"
        )
    if not 0.0 <= weight <= 1.0:
        raise InvalidArgument(f"weight: {weight} is out of range; it must be between 0 and 1")


class AdminApi:
    def __init__(self, store: RegistryStore, clock: Clock) -> None:
        self._store = store
        self._clock = clock

    async def endpoints(self, who: Principal, service: str) -> list[ServiceEndpoint]:
        _admin_only(who)
        found = await self._store.endpoints(service or None)
        return sorted(found, key=lambda e: (e.service, e.replica))

    async def set_rollout(
        self, who: Principal, service: str, version: str, weight: float
    ) -> Rollout:
        _admin_only(who)
        check_rollout(service, version, weight)
        rollout = Rollout(service, version, weight, iso(self._clock.now()))
        await self._store.put_rollout(rollout)
        return rollout

    async def rollouts(self, who: Principal) -> list[Rollout]:
        _admin_only(who)
        return sorted(await self._store.rollouts(), key=lambda r: r.service)

    async def delete_rollout(self, who: Principal, service: str) -> None:
        _admin_only(who)
        if not await self._store.delete_rollout(service):
            raise NotFound(f"no rollout for {service!r}")

    async def nodes(self, who: Principal) -> list[NodeRecord]:
        _admin_only(who)
        return sorted(await self._store.nodes(), key=lambda n: n.node_id)
