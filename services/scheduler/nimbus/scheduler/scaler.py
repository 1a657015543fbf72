"""The autoscaler loop (leader only): observed load in, instances created or drained out.

Scale-up under load is demand-driven at the invokers, which ask for an instance as soon as a call
waits (the activator path), so a burst is never slower than a cold start. This loop applies the
KPA policy's target to everything else: it keeps min_instances warm before any call, and drains
surplus instances gradually, keeping the last one for keep_alive_s.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import validation
from nimbus.common.clock import Clock
from nimbus.common.loops import loop_run
from nimbus.common.model import (
    LATEST,
    FunctionConfig,
    FunctionRecord,
    InstanceRecord,
    InstanceState,
    LoadReport,
    VersionRecord,
    load_key,
)
from nimbus.scheduler.autoscale import ScaleConfig, ScaleState, decide_scale

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScaleTarget:
    namespace: str
    function: str
    version: str
    revision: int
    config: FunctionConfig
    code_sha256: str


@dataclass(frozen=True, slots=True)
class Tuning:
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0


class Actuator(Protocol):
    """What the autoscaler asks of the scheduler core; each call returns at once."""

    def start(self, target: ScaleTarget) -> None: ...
    def drain(self, instance: InstanceRecord) -> None: ...
    def starting(self, key: str) -> int: ...
    def draining(self, instance_id: str) -> bool: ...


# A record written straight into etcd is not validated: whatever its min_instances, one tick
# starts at most this many instances of a function, and no more than the validated bound in all.
STARTS_PER_TICK = 16


def victims(instances: list[InstanceRecord], count: int) -> list[InstanceRecord]:
    """Which instances to drain: from the node holding most of them first (keeps the function
    spread), newest first."""
    per_node = Counter(i.node_id for i in instances)
    return sorted(instances, key=lambda i: (per_node[i.node_id], i.created_at), reverse=True)[
        :count
    ]


class Autoscaler:
    def __init__(
        self,
        functions: Mapping[bytes, FunctionRecord],
        versions: Mapping[bytes, VersionRecord],
        instances: Mapping[bytes, InstanceRecord],
        reports: Mapping[bytes, LoadReport],
        actuator: Actuator,
        clock: Clock,
        tuning: Tuning,
        is_leader: Callable[[], bool],
    ) -> None:
        self._functions = functions
        self._versions = versions
        self._instances = instances
        self._reports = reports
        self._act = actuator
        self._clock = clock
        self._tuning = tuning
        self._is_leader = is_leader
        self._states: dict[str, ScaleState] = {}

    def _targets(self) -> dict[str, ScaleTarget]:
        targets: dict[str, ScaleTarget] = {}
        for f in self._functions.values():
            targets[load_key(f.namespace, f.name, LATEST, f.revision)] = ScaleTarget(
                f.namespace, f.name, LATEST, f.revision, f.config, f.code_sha256
            )
        for v in self._versions.values():
            targets[load_key(v.namespace, v.name, v.version, v.revision)] = ScaleTarget(
                v.namespace, v.name, v.version, v.revision, v.config, v.code_sha256
            )
        return targets

    def tick(self) -> None:
        now = self._clock.now()
        observed: defaultdict[str, float] = defaultdict(float)
        for report in self._reports.values():
            for key, value in report.concurrency.items():
                observed[key] += value
        ready: defaultdict[str, list[InstanceRecord]] = defaultdict(list)
        for inst in self._instances.values():
            if inst.state == InstanceState.READY and not self._act.draining(inst.instance_id):
                ready[
                    load_key(inst.namespace, inst.function, inst.version, inst.function_revision)
                ].append(inst)
        targets = self._targets()
        active = {k for k in set(observed) | set(ready) if k in targets}
        active |= {
            k for k, t in targets.items() if t.version == LATEST and t.config.min_instances > 0
        }
        for key in active:
            target = targets[key]
            cfg = ScaleConfig(
                min_instances=target.config.min_instances if target.version == LATEST else 0,
                # max_concurrency counts calls;
                # with several calls per instance, fewer instances hold them.
                max_instances=-(
                    -target.config.max_concurrency // target.config.instance_concurrency
                ),
                keep_alive_s=float(target.config.keep_alive_s),
                instance_concurrency=target.config.instance_concurrency,
                stable_window_s=self._tuning.stable_window_s,
                panic_window_s=self._tuning.panic_window_s,
            )
            have = ready.get(key, [])
            decision, self._states[key] = decide_scale(
                observed.get(key, 0.0), len(have), self._states.get(key, ScaleState()), cfg, now
            )
            kept = min(cfg.min_instances, validation.MIN_INSTANCES_MAX)
            missing = kept - len(have) - self._act.starting(key)
            for _ in range(min(missing, STARTS_PER_TICK)):
                self._act.start(target)
            surplus = len(have) - decision.desired
            if surplus > 0:
                for inst in victims(have, surplus):
                    self._act.drain(inst)
        for key in set(self._states) - active:
            del self._states[key]

    async def run(self, period_s: float) -> None:
        while True:
            if self._is_leader():
                try:
                    with loop_run("autoscaler"):
                        self.tick()
                except Exception:
                    log.exception("autoscaler tick failed")
            else:
                self._states.clear()
            await self._clock.sleep(period_s)
