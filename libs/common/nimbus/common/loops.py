"""Control loops report every run as Prometheus series, so a loop that is stuck, slow or failing
shows on a dashboard (as Ray Serve's controller exports its loop's duration):

  nimbus_loop_last_success_timestamp_seconds{loop}  when a run last ended well (Unix time)
  nimbus_loop_duration_seconds{loop}                how long each run took, failed or not
  nimbus_loop_failures_total{loop}                  runs that raised

An alert on `time() - nimbus_loop_last_success_timestamp_seconds > N * period` finds a loop that
stopped, whether it hangs or fails every time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

LAST_SUCCESS = Gauge(
    "nimbus_loop_last_success_timestamp_seconds",
    "When the control loop's last run ended without an error (Unix time).",
    ["loop"],
)
DURATION = Histogram(
    "nimbus_loop_duration_seconds",
    "How long one run of the control loop took.",
    ["loop"],
    buckets=(0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
)
FAILURES = Counter("nimbus_loop_failures", "Runs of the control loop that raised.", ["loop"])


@contextmanager
def loop_run(loop: str) -> Iterator[None]:
    """Wraps one run of the loop named `loop`; the run's exception, if any, goes on up."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        FAILURES.labels(loop).inc()
        raise
    else:
        LAST_SUCCESS.labels(loop).set(time.time())
    finally:
        DURATION.labels(loop).observe(time.perf_counter() - started)
