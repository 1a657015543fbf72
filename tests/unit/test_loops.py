"""Control loops export their last good run, each run's duration and their failures."""

from __future__ import annotations

import time

import pytest
from nimbus.common.loops import DURATION, FAILURES, LAST_SUCCESS, loop_run
from prometheus_client import REGISTRY


def sample(name: str, loop: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"loop": loop})


def test_a_good_run_stamps_the_time_and_a_failed_one_counts_without_stamping() -> None:
    before = time.time()
    with loop_run("test_loop"):
        pass
    stamped = sample("nimbus_loop_last_success_timestamp_seconds", "test_loop")
    assert stamped is not None and stamped >= before
    with pytest.raises(RuntimeError), loop_run("test_loop"):
        raise RuntimeError("boom")
    assert sample("nimbus_loop_last_success_timestamp_seconds", "test_loop") == stamped
    assert sample("nimbus_loop_failures_total", "test_loop") == 1
    assert sample("nimbus_loop_duration_seconds_count", "test_loop") == 2
    assert {LAST_SUCCESS, DURATION, FAILURES}  # one set of families for every service
