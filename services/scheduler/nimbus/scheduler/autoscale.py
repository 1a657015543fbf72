"""The autoscaling policy, in the shape of Knative's KPA. Pure: inputs and `now` in, a decision out.

desired = ceil(observed concurrency / (instance_concurrency × target utilisation)), averaged over
a 60 s stable window; a 6 s panic window reacts to bursts: when it asks for at least twice the
ready instances, the policy panics for one stable window and never scales down meanwhile.
Scale-down is gradual (at most halving per decision), the last instance stays for keep_alive_s
after the last call, and min_instances are always kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class ScaleConfig:
    min_instances: int = 0
    # 0: no limit of the function's own (the cluster's cap still applies).
    max_instances: int = 0
    keep_alive_s: float = 600.0
    instance_concurrency: int = 1
    target_utilization: float = 0.7
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_down_rate: float = 2.0


@dataclass(frozen=True, slots=True)
class ScaleState:
    # (time, observed concurrency) samples within the stable window, oldest first.
    samples: tuple[tuple[float, float], ...] = ()
    panic_until: float = 0.0
    last_active: float = 0.0
    last_desired: int = 0


@dataclass(frozen=True, slots=True)
class Decision:
    desired: int
    panicking: bool
    stable_concurrency: float
    panic_concurrency: float


def _mean(samples: tuple[tuple[float, float], ...], since: float) -> float:
    values = [v for t, v in samples if t >= since]
    return sum(values) / len(values) if values else 0.0


def decide_scale(
    observed: float, ready: int, state: ScaleState, cfg: ScaleConfig, now: float
) -> tuple[Decision, ScaleState]:
    """`observed`: the calls in flight or queued for this function version across all invokers,
    averaged over the last report period. `ready`: its instances that can take calls."""
    samples = tuple(s for s in state.samples if s[0] > now - cfg.stable_window_s) + (
        (now, observed),
    )
    stable = _mean(samples, now - cfg.stable_window_s)
    panic = _mean(samples, now - cfg.panic_window_s)
    per_instance = cfg.instance_concurrency * cfg.target_utilization
    want_stable = math.ceil(stable / per_instance - 1e-9)
    want_panic = math.ceil(panic / per_instance - 1e-9)
    last_active = now if observed > 0 else state.last_active

    panic_until = state.panic_until
    if ready > 0 and want_panic >= cfg.panic_threshold * ready:
        panic_until = now + cfg.stable_window_s
    panicking = now < panic_until

    if panicking:
        desired = max(want_panic, state.last_desired, ready)
    else:
        floor_after_step_down = math.floor(ready / cfg.max_scale_down_rate)
        desired = max(want_stable, floor_after_step_down)
    if desired == 0 and ready > 0 and now - last_active < cfg.keep_alive_s:
        desired = 1
    desired = max(desired, cfg.min_instances)
    if cfg.max_instances:
        desired = min(desired, max(cfg.max_instances, cfg.min_instances))
    new_state = replace(
        state,
        samples=samples,
        panic_until=panic_until,
        last_active=last_active,
        last_desired=desired,
    )
    return Decision(desired, panicking, stable, panic), new_state
