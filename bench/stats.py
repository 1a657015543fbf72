"""Percentiles and summaries of latency samples. Pure: numbers in, numbers out."""

from __future__ import annotations

import math
from collections.abc import Sequence

PERCENTILES = (50, 90, 99)


def percentile(samples: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between closest ranks (numpy's default).
    Raises ValueError on an empty sample."""
    if not samples:
        raise ValueError("percentile of an empty sample")
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} is not within 0..100")
    data = sorted(samples)
    rank = (len(data) - 1) * p / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(data[low])
    return data[low] + (data[high] - data[low]) * (rank - low)


def summarize_us(samples_us: Sequence[float]) -> dict[str, float | int]:
    """Microsecond samples -> {"n", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms"}."""
    if not samples_us:
        return {"n": 0}
    out: dict[str, float | int] = {"n": len(samples_us)}
    for p in PERCENTILES:
        out[f"p{p}_ms"] = round(percentile(samples_us, p) / 1000.0, 3)
    out["mean_ms"] = round(sum(samples_us) / len(samples_us) / 1000.0, 3)
    out["min_ms"] = round(min(samples_us) / 1000.0, 3)
    out["max_ms"] = round(max(samples_us) / 1000.0, 3)
    return out


def differences(totals: Sequence[float], parts: Sequence[float | None]) -> list[float] | None:
    """total - part per sample, or None when any part is unknown (then no subtraction is honest)."""
    if len(totals) != len(parts) or any(p is None for p in parts):
        return None
    return [t - (p or 0.0) for t, p in zip(totals, parts, strict=True)]


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline rounded to 2 places; None when either is missing or the baseline is 0."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return round(value / baseline, 2)
