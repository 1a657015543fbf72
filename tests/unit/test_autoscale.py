"""The KPA-shaped policy, table by table, on a fake timeline."""

import itertools

import pytest
from nimbus.scheduler.autoscale import ScaleConfig, ScaleState, decide_scale

CFG = ScaleConfig(keep_alive_s=600)


def run(timeline, cfg=CFG, ready_follows=True):
    """timeline: [(t, observed)]; ready follows the previous decision, as in a converged cluster."""
    state, ready, out = ScaleState(), 0, []
    for t, observed in timeline:
        decision, state = decide_scale(observed, ready, state, cfg, float(t))
        out.append(decision.desired)
        if ready_follows:
            ready = decision.desired
    return out


@pytest.mark.parametrize(
    "observed, expected", [(0.7, 1), (1.0, 2), (7.0, 10), (14.0, 20), (0.1, 1)]
)
def test_desired_is_concurrency_over_target_utilisation(observed, expected):
    decision, _ = decide_scale(observed, 0, ScaleState(), CFG, 0.0)
    assert decision.desired == expected


def test_panic_scales_up_at_once_and_never_down_while_panicking():
    # 10 s of 1 call in flight, then a burst of 35 for 3 s, then quiet.
    timeline = (
        [(t, 1.0) for t in range(10)]
        + [(t, 35.0) for t in range(10, 13)]
        + [(t, 0.0) for t in range(13, 60)]
    )
    desired = run(timeline)
    assert desired[9] == 2
    assert desired[10] >= 4 * desired[9]  # panic: reacts on the first burst sample
    peak = max(desired)
    # Never down while panicking (60 s from the last panic trigger).
    assert all(d == peak for d in desired[desired.index(peak) : 60])


def test_scale_down_is_gradual_and_keeps_the_last_instance():
    cfg = ScaleConfig(keep_alive_s=30, stable_window_s=10, panic_window_s=2)
    timeline = [(t, 8.0) for t in range(20)] + [(t, 0.0) for t in range(20, 80)]
    desired = run(timeline, cfg)
    after = desired[20:]
    assert all(b >= a // 2 for a, b in itertools.pairwise(after))  # at most halving per step
    ones = [t for t, d in enumerate(after, start=20) if d == 1]
    assert ones and min(ones) < 49  # reached 1 well before the keep-alive ends
    assert desired[48] == 1  # 29 s after the last call: still kept
    assert desired[-1] == 0  # after keep_alive_s: scaled to zero


@pytest.mark.parametrize("min_instances", [1, 2, 5])
def test_min_instances_are_always_kept(min_instances):
    cfg = ScaleConfig(min_instances=min_instances, keep_alive_s=1)
    assert run([(t, 0.0) for t in range(100)], cfg) == [min_instances] * 100


def test_max_instances_caps_the_target():
    cfg = ScaleConfig(max_instances=4)
    assert max(run([(t, 50.0) for t in range(10)], cfg)) == 4


def test_idle_function_with_no_instances_stays_at_zero():
    assert run([(t, 0.0) for t in range(10)]) == [0] * 10
