"""bench.report from canned sections: headline keys, target verdicts, the table, the markdown."""

from bench.report import headline, markdown, rows, skipped_notes, table_text, verdicts


def summary(p50: float, p99: float) -> dict:
    return {"n": 100, "p50_ms": p50, "p90_ms": (p50 + p99) / 2, "p99_ms": p99}


SECTIONS = {
    "floors": {
        "grpc_bare": summary(0.5, 1.0),
        "grpc_envoy": summary(0.8, 1.5),
        "http_inprocess": summary(0.2, 0.4),
        "http_inprocess_c32": {**summary(2, 4), "rps": 10000.0},
    },
    "warm": {
        "rest": {"e2e": summary(2.0, 6.0), "overhead": summary(1.0, 4.0), "overhead_basis": "b"},
        "grpc": {"e2e": summary(2.5, 7.0), "overhead": summary(2.4, 6.9), "overhead_basis": "b"},
    },
    "cold_start": {
        "overhead": summary(40.0, 60.0),
        "overhead_basis": "cold",
        "warm_pool": False,
        "import_time": "not reported",
    },
    "cold_start_nopool": {"same_as": "cold_start"},
    "throughput": {
        "levels": [
            {"concurrency": 1, "rps": 400.0, "errors": 0, "calls": 10},
            {"concurrency": 8, "rps": 1200.0, "errors": 3, "calls": 10},
        ],
        "best_rps": 400.0,
        "best_concurrency": 1,
    },
    "async": {"skipped": "not implemented"},
    "autoscale": {"served_s": 1.5, "peak_instances": 50, "scale_down": {"skipped": "idle 600 s"}},
    "memory": {
        "idle": {"rss_mb": {"invoker-1": 40.0}, "instances": {"count": 1, "rss_mb_max": 14.0}},
        "under_load": {"rss_mb_peak": {"invoker-1": 44.0}},
    },
    "peer": {
        "name": "serverless-offline",
        "warm": summary(0.9, 5.0),
        "cold_start": summary(45.0, 70.0),
        "throughput_c32": {"rps": 2000.0},
    },
    "peer_async": {"name": "celery+redis", "completed_eps": 650.0, "accepted_eps": 900.0},
}


def test_headline_has_every_key_issue_8_names():
    head = headline(SECTIONS)
    for key in (
        "warm_overhead_p50_ms",
        "warm_overhead_p99_ms",
        "grpc_floor_p50_ms",
        "cold_start_p50_ms",
        "cold_start_nopool_p50_ms",
        "sync_throughput_rps",
        "async_throughput_eps",
        "burst_served_s",
        "peer",
    ):
        assert key in head
    assert head["warm_overhead_p50_ms"] == 1.0 and head["grpc_floor_p50_ms"] == 0.5
    assert head["warm_overhead_ratio_to_grpc_floor"] == 2.0
    # No pool in the build: the one cold-start run stands for "without pool" too.
    assert head["cold_start_p50_ms"] == head["cold_start_nopool_p50_ms"] == 40.0
    assert head["cold_start_pool"] is False
    assert head["sync_throughput_rps"] == 400.0 and head["async_throughput_eps"] is None
    assert head["peer"]["name"] == "serverless-offline" and head["peer"]["warm_p50_ms"] == 0.9


def test_headline_of_nothing_is_all_none():
    head = headline({})
    assert head["warm_overhead_p50_ms"] is None and head["peer"]["name"] is None


def test_verdicts():
    by_key = {v["key"]: v["verdict"] for v in verdicts(headline(SECTIONS))}
    assert by_key["warm_overhead_p50_ms"] == "met"
    assert by_key["warm_overhead_p99_ms"] == "met"
    assert by_key["cold_start_p50_ms"] == "n/a (no warm pool)"
    assert by_key["cold_start_nopool_p50_ms"] == "met"
    assert by_key["sync_throughput_rps"] == "NOT met"
    assert by_key["async_throughput_eps"] == "n/a"
    assert by_key["beat_peer_warm_p50"] == "NOT met"  # 2.0 ms against 0.9 ms


def test_rows_put_each_figure_beside_a_baseline_and_ratio():
    table = {(r.label, r.baseline_label): r for r in rows(headline(SECTIONS))}
    r = table[("warm overhead p50 (REST)", "bare gRPC p50")]
    assert (r.value, r.baseline, r.ratio, r.verdict) == (1.0, 0.5, 2.0, "met")
    assert table[("sync throughput (best, 0 errors)", "serverless-offline c=32")].ratio == 0.2
    async_row = table[("async events end to end", "celery+redis tasks end to end")]
    assert (async_row.value, async_row.baseline, async_row.verdict) == (None, 650.0, "n/a")


def test_text_and_markdown_render():
    head = headline(SECTIONS)
    text = table_text(head)
    assert "warm overhead p50 (REST)" in text and "2x" in text and "NOT met" in text
    md = markdown(
        {
            "headline": head,
            "sections": SECTIONS,
            "meta": {
                "started_at": "t",
                "machine": "m",
                "commit": "c",
                "quick": True,
                "duration_s": 1,
                "command": "NIMBUS_BENCH_QUICK=1 make bench",
            },
        }
    )
    assert "| warm overhead p50 (REST) | 1 ms | bare gRPC p50: 0.5 ms | 2x |" in md
    assert "NIMBUS_BENCH_QUICK=1 make bench" in md and "latest.png" in md
    assert "| invoker-1 | 40 | 44 |" in md


def test_skipped_notes_walk_nested_sections():
    notes = skipped_notes(SECTIONS)
    assert "async: skipped — not implemented" in notes
    assert "autoscale.scale_down: skipped — idle 600 s" in notes
