"""How one route's calls are shared between the upstream clusters that can serve them. Pure.

A route (say the v1 calls of api) can be served by every release of api that still speaks v1:
the clusters api_v1 and api_v2. Without a rollout the calls spread by replica count, as one pool
would. With a rollout {version: v2, weight: 0.1}, the v2 release gets 10 % and the other releases
share the rest by replica count. Two safety rules win over any rollout: a cluster with no replica
gets nothing while another has some, and the weights never sum to 0 (Envoy needs a positive sum;
with no replica anywhere the calls go to the newest cluster and fail there with 503).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from nimbus.common.registry import Rollout

# Envoy's weighted_clusters weights are integers; they are written as parts of this total.
TOTAL = 1000


def shares(
    clusters: Sequence[str],
    replicas: Mapping[str, int],
    rollout: Rollout | None,
    release_of: Mapping[str, str],
) -> dict[str, float]:
    """Fractions (summing to 1) of a route's calls per cluster. `clusters` lists the route's
    candidate clusters oldest release first; `release_of` maps a cluster to its release."""
    live = [c for c in clusters if replicas.get(c, 0) > 0]
    if not live:
        return {c: (1.0 if c == clusters[-1] else 0.0) for c in clusters}
    out = {c: 0.0 for c in clusters}
    target = None
    if rollout is not None:
        target = next((c for c in live if release_of.get(c) == rollout.version), None)
    others = [c for c in live if c != target]
    if target is None:
        _spread(out, live, replicas, 1.0)
    elif not others:
        out[target] = 1.0
    else:
        weight = min(max(rollout.weight, 0.0), 1.0) if rollout is not None else 0.0
        out[target] = weight
        _spread(out, others, replicas, 1.0 - weight)
    return out


def _spread(
    out: dict[str, float], clusters: Sequence[str], replicas: Mapping[str, int], amount: float
) -> None:
    total = sum(replicas[c] for c in clusters)
    for c in clusters:
        out[c] += amount * replicas[c] / total


def integer_weights(fractions: Mapping[str, float], total: int = TOTAL) -> dict[str, int]:
    """Whole-number weights summing to `total` (largest remainder), in the order given; a share
    above 0 never rounds to 0 unless total is too small to give every such share one part."""
    names = list(fractions)
    raw = {n: max(fractions[n], 0.0) for n in names}
    mass = sum(raw.values())
    if mass <= 0:
        return {n: (total if i == len(names) - 1 else 0) for i, n in enumerate(names)}
    exact = {n: raw[n] * total / mass for n in names}
    out = {n: int(exact[n]) for n in names}
    for n in names:
        if raw[n] > 0 and out[n] == 0:
            out[n] = 1
    left = total - sum(out.values())
    by_remainder = sorted(names, key=lambda n: exact[n] - int(exact[n]), reverse=True)
    i = 0
    while left > 0 and by_remainder:
        n = by_remainder[i % len(by_remainder)]
        if raw[n] > 0:
            out[n] += 1
            left -= 1
        i += 1
    while left < 0:
        # Raised shares took parts from the largest ones.
        n = max(names, key=lambda m: out[m])
        out[n] -= 1
        left += 1
    return out
