"""Time-averaged concurrency per pool, the autoscaler's input (Knative's observed concurrency).

Sampled every tick from the pools (no I/O); `drain()` returns the period's averages and starts a
new period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from nimbus.common.model import load_key
from nimbus.invoker.sync.pool import Pool, PoolKey


class LoadMeter:
    def __init__(self) -> None:
        self._sums: defaultdict[str, float] = defaultdict(float)
        self._ticks = 0

    def sample(self, pools: Mapping[PoolKey, Pool]) -> None:
        self._ticks += 1
        for key, pool in pools.items():
            load = pool.in_flight + sum(1 for w in pool.waiters if not w.done())
            if load:
                self._sums[
                    load_key(key.namespace, key.function, key.version, key.function_revision)
                ] += load

    def drain(self) -> dict[str, float]:
        ticks = max(self._ticks, 1)
        averages = {k: round(v / ticks, 3) for k, v in self._sums.items()}
        self._sums.clear()
        self._ticks = 0
        return averages
