"""The async peer's producer, run by bench.celery_peer under the Celery venv (imports only Celery):

    python celery_producer.py BROKER_PORT EVENTS TIMEOUT_S

Sends EVENTS no-op tasks, waits for every result (bounded by TIMEOUT_S), prints one JSON line:
{"events", "accepted_eps", "completed", "completed_eps", "errors"}. The task module
(bench_tasks.py, written by bench.celery_peer) must be importable from the working directory.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main() -> None:
    events, timeout_s = int(sys.argv[2]), float(sys.argv[3])
    sys.path.insert(0, os.getcwd())  # a script's sys.path[0] is its own directory, not the cwd
    from bench_tasks import noop  # written beside it by bench.celery_peer

    deadline = time.monotonic() + timeout_s
    noop.delay().get(timeout=min(30.0, timeout_s))  # the worker is up and warm
    t0 = time.perf_counter()
    pending = [noop.delay() for _ in range(events)]
    accepted_s = time.perf_counter() - t0
    completed = errors = 0
    for result in pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            result.get(timeout=left)
            completed += 1
        except Exception:  # a failed or timed-out task is counted, not raised
            errors += 1
    done_s = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "events": events,
                "accepted_eps": round(events / accepted_s, 1),
                "completed": completed,
                "completed_eps": round(completed / done_s, 1),
                "errors": errors,
            }
        )
    )


if __name__ == "__main__":
    main()
