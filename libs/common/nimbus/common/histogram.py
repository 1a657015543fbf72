"""Fixed-bucket duration histograms and percentile estimates from their counts.

Counters in Redis can only add, so a minute's durations are kept as counts per bucket rather than
as samples; a percentile is then estimated as Prometheus's histogram_quantile does: find the bucket
holding the rank and interpolate linearly inside it.

Bucket i counts durations in (BOUNDS_MS[i-1], BOUNDS_MS[i]] (bucket 0 starts at 0); the last bucket,
index len(BOUNDS_MS), counts everything above the largest bound.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

# Dense where calls usually are (1 ms .. 1 s), sparse up to the longest timeout (900 s).
BOUNDS_MS: tuple[float, ...] = (
    1,
    2,
    3,
    5,
    7,
    10,
    15,
    20,
    30,
    50,
    75,
    100,
    150,
    200,
    300,
    500,
    750,
    1_000,
    1_500,
    2_000,
    3_000,
    5_000,
    7_500,
    10_000,
    15_000,
    20_000,
    30_000,
    60_000,
    120_000,
    300_000,
    900_000,
)
BUCKETS = len(BOUNDS_MS) + 1


def bucket_of(duration_ms: float) -> int:
    return bisect.bisect_left(BOUNDS_MS, duration_ms)


def percentile(counts: Sequence[int], q: float) -> float:
    """The q-quantile (0 <= q <= 1) of the durations counted in `counts` (one count per bucket),
    in ms; 0.0 when nothing was counted. Above the largest bound there is nothing to interpolate
    towards, so a rank in the overflow bucket answers the largest bound."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within 0..1, got {q}")
    if len(counts) != BUCKETS:
        raise ValueError(f"expected {BUCKETS} bucket counts, got {len(counts)}")
    total = sum(counts)
    if total == 0:
        return 0.0
    rank = q * total
    below = 0
    for i, n in enumerate(counts):
        if n <= 0 or below + n < rank:
            below += max(n, 0)
            continue
        if i == len(BOUNDS_MS):
            break
        low = 0.0 if i == 0 else float(BOUNDS_MS[i - 1])
        return low + (float(BOUNDS_MS[i]) - low) * (rank - below) / n
    return float(BOUNDS_MS[-1])
