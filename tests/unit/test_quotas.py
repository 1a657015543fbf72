"""The pure quota checks: what a deploy or an event would add, against an admin's quotas."""

from __future__ import annotations

import pytest
from nimbus.common.errors import InvalidArgument, Throttled
from nimbus.common.model import FunctionConfig, FunctionRecord
from nimbus.common.quotas import QUOTA_MAX, Quotas, backlog_over, check_deploy, check_quotas


def fn(name: str, min_instances: int = 0, memory_mb: int = 128) -> FunctionRecord:
    config = FunctionConfig(
        "python3.11", "main.handler", memory_mb=memory_mb, min_instances=min_instances
    )
    return FunctionRecord("team", name, config, "sha", 1, "c", "u", 1)


def test_max_functions_counts_the_others_and_allows_an_update() -> None:
    q = Quotas("team", max_functions=2)
    check_deploy(q, [fn("a")], "b", 0, 128)
    with pytest.raises(
        Throttled, match=r"^quota max_functions: .* has 2 functions, the quota is 2"
    ):
        check_deploy(q, [fn("a"), fn("b")], "c", 0, 128)
    check_deploy(q, [fn("a"), fn("b")], "b", 0, 128)  # reconfiguring b adds no function


def test_max_warm_mb_sums_min_instances_times_memory() -> None:
    q = Quotas("team", max_warm_mb=1024)
    existing = [fn("a", 2, 256), fn("b", 0, 3008)]
    check_deploy(q, existing, "c", 1, 512)  # 512 + 512 = 1024
    with pytest.raises(Throttled, match=r"^quota max_warm_mb: .* 1025 MB .* quota of 1024 MB"):
        check_deploy(q, existing, "c", 1, 513)
    check_deploy(q, existing, "a", 4, 256)  # a's own old figure is replaced, not added


def test_backlog_refuses_at_the_quota() -> None:
    q = Quotas("team", max_async_backlog=3)
    assert backlog_over(q, 2) is None
    refusal = backlog_over(q, 3)
    assert refusal is not None and str(refusal).startswith("quota max_async_backlog: ")
    assert backlog_over(Quotas("team"), 10**9) is None and backlog_over(None, 5) is None


@pytest.mark.parametrize(
    "field", ["max_functions", "max_warm_mb", "max_concurrency", "max_async_backlog"]
)
@pytest.mark.parametrize("value", [-1, QUOTA_MAX + 1])
def test_bad_quota_values_name_the_field(field: str, value: int) -> None:
    with pytest.raises(InvalidArgument, match=f"^{field}: {value} is out of range"):
        check_quotas(Quotas("team", **{field: value}))


def test_quotas_round_trip_and_ignore_unknown_fields() -> None:
    q = Quotas("team", 1, 2, 3, 4, "t")
    assert Quotas.from_json(q.to_json()) == q
    assert (
        Quotas.from_json(b'{"namespace": "x", "max_functions": 5, "future": 1}').max_functions == 5
    )
