"""Concurrency limits that hold across invoker replicas.

A call takes a slot in a Redis sorted set per function (and per namespace when that limit is on),
scored by the time the slot expires: its deadline plus slack. A replica that dies mid-call never
releases its slots, and they lapse at their deadline. One round trip takes both slots or none.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nimbus.common.clock import Clock
from nimbus.common.errors import Throttled
from nimbus.common.quotas import Quotas

log = logging.getLogger(__name__)

# Redis answers: 0 = slots taken, 1 = the function is at its limit, 2 = the namespace is.
TAKE_SLOTS = """
local now, expiry, token = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local limits = {tonumber(ARGV[4]), tonumber(ARGV[5])}
for i = 1, 2 do
  if limits[i] > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZCARD', KEYS[i]) >= limits[i] then return i end
  end
end
for i = 1, 2 do
  if limits[i] > 0 then
    redis.call('ZADD', KEYS[i], expiry, token)
    redis.call('EXPIREAT', KEYS[i], math.ceil(expiry) + 1)
  end
end
return 0
"""


class SlotStore(Protocol):
    async def take(
        self, keys: tuple[str, str], now: float, expiry: float, token: str, limits: tuple[int, int]
    ) -> int: ...
    async def give_back(self, keys: tuple[str, str], token: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Slot:
    keys: tuple[str, str]
    token: str


class ConcurrencyLimiter:
    """`namespace_limit` holds for every namespace (NIMBUS_NAMESPACE_CONCURRENCY); a namespace's
    max_concurrency quota, when an admin set one, holds for that namespace instead."""

    def __init__(
        self,
        store: SlotStore,
        clock: Clock,
        namespace_limit: int,
        quotas: Callable[[str], Quotas | None] = lambda namespace: None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._namespace_limit = namespace_limit
        self._quotas = quotas

    def namespace_limit(self, namespace: str) -> int:
        quotas = self._quotas(namespace)
        if quotas is not None and quotas.max_concurrency:
            return quotas.max_concurrency
        return self._namespace_limit

    def applies(self, function_limit: int, namespace: str) -> bool:
        return function_limit > 0 or self.namespace_limit(namespace) > 0

    async def acquire(
        self, namespace: str, function: str, function_limit: int, hold_s: float
    ) -> Slot:
        keys = (f"nimbus:conc:fn:{namespace}/{function}", f"nimbus:conc:ns:{namespace}")
        token = secrets.token_hex(8)
        now = self._clock.now()
        namespace_limit = self.namespace_limit(namespace)
        verdict = await self._store.take(
            keys, now, now + hold_s, token, (function_limit, namespace_limit)
        )
        if verdict == 1:
            raise Throttled(
                f"Rate exceeded: function {function!r} is at its max_concurrency of"
                f" {function_limit}",
                retry_after_s=1,
            )
        if verdict == 2:
            raise Throttled(
                f"Rate exceeded: namespace {namespace!r} is at its concurrency limit of"
                f" {namespace_limit} (quota max_concurrency)",
                retry_after_s=1,
            )
        return Slot(keys, token)

    async def release(self, slot: Slot) -> None:
        await self._store.give_back(slot.keys, slot.token)
