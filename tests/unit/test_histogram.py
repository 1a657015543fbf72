"""Duration histogram buckets and the percentile estimate from their counts."""

from __future__ import annotations

import pytest
from nimbus.common.histogram import BOUNDS_MS, BUCKETS, bucket_of, percentile


def counts(**by_bucket: int) -> list[int]:
    out = [0] * BUCKETS
    for name, n in by_bucket.items():
        out[int(name[1:])] = n
    return out


@pytest.mark.parametrize(
    ("ms", "bucket"),
    [
        (0.0, 0),
        (0.4, 0),
        (1.0, 0),
        (1.0001, 1),
        (2.0, 1),
        (4.0, 3),
        (100.0, 11),
        (100.5, 12),
        (900_000.0, len(BOUNDS_MS) - 1),
        (900_001.0, len(BOUNDS_MS)),
        (-1.0, 0),
    ],
)
def test_bucket_upper_bounds_are_inclusive(ms: float, bucket: int) -> None:
    assert bucket_of(ms) == bucket


def test_bounds_increase() -> None:
    assert list(BOUNDS_MS) == sorted(set(BOUNDS_MS))
    assert BUCKETS == len(BOUNDS_MS) + 1


def test_empty_histogram_is_zero() -> None:
    assert percentile([0] * BUCKETS, 0.5) == 0.0


@pytest.mark.parametrize(
    ("hist", "q", "expected"),
    [
        # 10 calls in (5, 7]: the median is halfway through the bucket.
        (counts(b4=10), 0.5, 6.0),
        (counts(b4=10), 0.9, 6.8),
        (counts(b4=10), 1.0, 7.0),
        (counts(b4=10), 0.0, 5.0),
        # The first bucket starts at 0.
        (counts(b0=4), 0.5, 0.5),
        # 90 fast (0..1], 10 slow (100, 150]: p50 in the fast bucket, p99 in the slow one.
        (counts(b0=90, b12=10), 0.5, 50 / 90),
        (counts(b0=90, b12=10), 0.9, 1.0),
        (counts(b0=90, b12=10), 0.99, 100 + 50 * 9 / 10),
        # Empty buckets between are skipped, not interpolated over.
        (counts(b1=1, b20=1), 0.75, 2000 + 1000 * 0.5),
    ],
)
def test_percentile_interpolates_linearly_in_the_bucket(
    hist: list[int], q: float, expected: float
) -> None:
    assert percentile(hist, q) == pytest.approx(expected)


def test_overflow_bucket_answers_the_largest_bound() -> None:
    assert percentile(counts(**{f"b{len(BOUNDS_MS)}": 3}), 0.5) == BOUNDS_MS[-1]


def test_percentiles_are_monotonic_in_q() -> None:
    hist = counts(b0=3, b5=7, b9=2, b17=1)
    values = [percentile(hist, q / 100) for q in range(101)]
    assert values == sorted(values)


@pytest.mark.parametrize(
    ("hist", "q"), [([0] * BUCKETS, 1.5), ([0] * BUCKETS, -0.1), ([1, 2], 0.5)]
)
def test_bad_arguments(hist: list[int], q: float) -> None:
    with pytest.raises(ValueError):
        percentile(hist, q)
