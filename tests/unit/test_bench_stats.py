"""bench.stats and bench.config: percentiles, summaries, ratios, and the bench's env parsing."""

import pytest

from bench.config import BenchConfig, BenchConfigError
from bench.stats import differences, percentile, ratio, summarize_us


@pytest.mark.parametrize(
    ("samples", "p", "want"),
    [
        ([5], 50, 5.0),
        ([5], 99, 5.0),
        ([1, 2, 3, 4], 0, 1.0),
        ([1, 2, 3, 4], 100, 4.0),
        ([1, 2, 3, 4], 50, 2.5),
        ([4, 3, 2, 1], 50, 2.5),  # order does not matter
        (list(range(1, 101)), 90, 90.1),
        (list(range(1, 101)), 99, 99.01),
    ],
)
def test_percentile_interpolates_like_numpy(samples, p, want):
    assert percentile(samples, p) == pytest.approx(want)


def test_percentile_rejects_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summarize_us_reports_milliseconds():
    s = summarize_us([1000, 2000, 3000, 4000, 5000])
    assert s == {
        "n": 5,
        "p50_ms": 3.0,
        "p90_ms": 4.6,
        "p99_ms": 4.96,
        "mean_ms": 3.0,
        "min_ms": 1.0,
        "max_ms": 5.0,
    }


def test_summarize_empty_is_just_a_count():
    assert summarize_us([]) == {"n": 0}


def test_differences_need_every_part():
    assert differences([10, 20], [1, 2]) == [9, 18]
    assert differences([10, 20], [1, None]) is None
    assert differences([10], [1, 2]) is None


@pytest.mark.parametrize(
    ("value", "baseline", "want"),
    [(3.0, 1.5, 2.0), (1.0, 3.0, 0.33), (None, 1.0, None), (1.0, None, None), (1.0, 0.0, None)],
)
def test_ratio(value, baseline, want):
    assert ratio(value, baseline) == want


def test_config_defaults_and_quick():
    full = BenchConfig.from_env({"HOME": "/h"})
    assert (full.warm_calls, full.cold_functions, full.load_s, full.quick) == (
        2000,
        30,
        10.0,
        False,
    )
    assert full.concurrency_levels == (1, 8, 32, 64)
    assert str(full.cache_dir) == "/h/.cache/nimbus-bench"
    for env in ({"NIMBUS_BENCH_QUICK": "1"}, {"BENCH_QUICK": "true"}):
        quick = BenchConfig.from_env(env)
        assert quick.quick and quick.load_s == 2.0 and quick.warm_calls == 500


def test_config_sections_and_errors():
    cfg = BenchConfig.from_env({"NIMBUS_BENCH_SECTIONS": "warm, floors"})
    assert cfg.sections == ("warm", "floors") and cfg.wants("warm") and not cfg.wants("peer")
    with pytest.raises(BenchConfigError, match="NIMBUS_BENCH_SECTIONS"):
        BenchConfig.from_env({"NIMBUS_BENCH_SECTIONS": "warm,nope"})
    with pytest.raises(BenchConfigError, match="NIMBUS_BENCH_WARM_CALLS"):
        BenchConfig.from_env({"NIMBUS_BENCH_WARM_CALLS": "many"})
    with pytest.raises(BenchConfigError, match="NIMBUS_BENCH_LOAD_S"):
        BenchConfig.from_env({"NIMBUS_BENCH_LOAD_S": "0.1"})
