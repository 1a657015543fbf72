"""Per-namespace quotas an admin sets (PUT /v1/namespaces/{namespace}/quotas), and the pure
checks of them. Zero means no quota of that kind. The api checks what a deploy would add (the
number of functions, the memory kept warm by min_instances); the invokers check what a call or
an event would add (calls in flight, events waiting).

Every refusal names the quota, its value and how far over it the request would go, so the person
who hits it knows what to ask their admin for.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields

from nimbus.common.errors import InvalidArgument, Throttled
from nimbus.common.model import FunctionRecord

# The largest value any quota takes: far above what one cluster runs, small enough for int64.
QUOTA_MAX = 1_000_000_000


@dataclass(frozen=True, slots=True)
class Quotas:
    namespace: str
    # Functions that may exist at once.
    max_functions: int = 0
    # The sum over functions of min_instances x memory_mb: memory kept warm whether used or not.
    max_warm_mb: int = 0
    # Calls in flight across the namespace's functions and every invoker replica.
    max_concurrency: int = 0
    # Async events accepted and not yet finished.
    max_async_backlog: int = 0
    updated_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Quotas:
        data = json.loads(raw)
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


LIMITS = ("max_functions", "max_warm_mb", "max_concurrency", "max_async_backlog")


def check_quotas(q: Quotas) -> None:
    for name in LIMITS:
        value = getattr(q, name)
        if not isinstance(value, int) or not 0 <= value <= QUOTA_MAX:
            raise InvalidArgument(
                f"{name}: {value} is out of range; it must be between 0 (no quota) and {QUOTA_MAX}"
            )


def warm_mb(functions: Iterable[FunctionRecord]) -> int:
    return sum(f.config.min_instances * f.config.memory_mb for f in functions)


def check_deploy(
    q: Quotas, existing: list[FunctionRecord], name: str, min_instances: int, memory_mb: int
) -> None:
    """Raises Throttled when creating or reconfiguring function `name` (min_instances x memory_mb
    kept warm) would take the namespace over a quota. Pure."""
    others = [f for f in existing if f.name != name]
    if q.max_functions and len(others) + 1 > q.max_functions:
        raise Throttled(
            f"quota max_functions: namespace {q.namespace!r} has {len(others)} functions, the"
            f" quota is {q.max_functions}; delete one or ask an admin to raise the quota"
        )
    if q.max_warm_mb:
        total = warm_mb(others) + min_instances * memory_mb
        if total > q.max_warm_mb:
            raise Throttled(
                f"quota max_warm_mb: min_instances x memory_mb would keep {total} MB warm in"
                f" namespace {q.namespace!r}, over its quota of {q.max_warm_mb} MB"
            )


def backlog_over(q: Quotas | None, backlog: int) -> Throttled | None:
    """The refusal for one more async event when `backlog` are waiting, if over the quota."""
    if q is None or not q.max_async_backlog or backlog < q.max_async_backlog:
        return None
    return Throttled(
        f"quota max_async_backlog: namespace {q.namespace!r} has {backlog} async events waiting,"
        f" its quota is {q.max_async_backlog}; retry when they have run",
        retry_after_s=1,
    )
