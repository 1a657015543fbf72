"""From the sections' raw figures to the results: the headline keys, DESIGN.md's targets as met or
not, the rows of the table (each figure beside its baseline and the ratio), and the markdown
summary. Pure: dicts in, dicts and text out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.stats import ratio


def dig(d: Any, *path: str) -> Any:
    """d[path[0]][path[1]]..., None as soon as a step is missing or not a dict."""
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


@dataclass(frozen=True, slots=True)
class Target:
    key: str
    text: str  # as DESIGN.md says it
    limit: float
    higher_is_better: bool = False

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "n/a"
        ok = value >= self.limit if self.higher_is_better else value <= self.limit
        return "met" if ok else "NOT met"


TARGETS = (
    Target("warm_overhead_p50_ms", "warm overhead p50 <= 1.5 ms", 1.5),
    Target("warm_overhead_p99_ms", "warm overhead p99 <= 5 ms", 5.0),
    Target("cold_start_p50_ms", "cold start p50 <= 30 ms with a warm pool", 30.0),
    Target("cold_start_nopool_p50_ms", "cold start p50 <= 150 ms without a pool", 150.0),
    Target("sync_throughput_rps", ">= 1,000 warm sync invokes/s", 1000.0, higher_is_better=True),
    Target(
        "async_throughput_eps", ">= 500 async events/s end to end", 500.0, higher_is_better=True
    ),
)


def _cold_figure(section: Any, pct: str) -> float | None:
    """A cold-start percentile: the overhead when something could be subtracted, else end to end."""
    value = dig(section, "overhead", f"{pct}_ms")
    return float(value) if isinstance(value, (int, float)) else None


def headline(sections: dict[str, Any]) -> dict[str, Any]:
    """The keys issue 8 names, plus a few more, from the sections' raw figures."""
    warm = sections.get("warm", {})
    floors = sections.get("floors", {})
    thr = sections.get("throughput", {})
    scale = sections.get("autoscale", {})
    peer = sections.get("peer", {})
    pool = sections.get("cold_start", {})
    nopool = sections.get("cold_start_nopool", {})
    out: dict[str, Any] = {
        "warm_overhead_p50_ms": dig(warm, "rest", "overhead", "p50_ms"),
        "warm_overhead_p99_ms": dig(warm, "rest", "overhead", "p99_ms"),
        "warm_overhead_basis": dig(warm, "rest", "overhead_basis"),
        "warm_rest_p50_ms": dig(warm, "rest", "e2e", "p50_ms"),
        "warm_rest_p99_ms": dig(warm, "rest", "e2e", "p99_ms"),
        "warm_grpc_p50_ms": dig(warm, "grpc", "e2e", "p50_ms"),
        "warm_grpc_p99_ms": dig(warm, "grpc", "e2e", "p99_ms"),
        "warm_grpc_overhead_p50_ms": dig(warm, "grpc", "overhead", "p50_ms"),
        "warm_grpc_overhead_p99_ms": dig(warm, "grpc", "overhead", "p99_ms"),
        "grpc_floor_p50_ms": dig(floors, "grpc_bare", "p50_ms"),
        "grpc_floor_p99_ms": dig(floors, "grpc_bare", "p99_ms"),
        "grpc_envoy_floor_p50_ms": dig(floors, "grpc_envoy", "p50_ms"),
        "http_floor_p50_ms": dig(floors, "http_inprocess", "p50_ms"),
        "http_floor_rps_c32": dig(floors, "http_inprocess_c32", "rps"),
        # Until the node-agent has a warm pool, the one cold-start run is "without pool", and
        # cold_start_p50_ms (the platform's cold start as it is) is that same figure.
        "cold_start_pool": bool(dig(pool, "warm_pool")),
        "cold_start_p50_ms": _cold_figure(pool, "p50"),
        "cold_start_p99_ms": _cold_figure(pool, "p99"),
        "cold_start_nopool_p50_ms": _cold_figure(
            nopool if dig(nopool, "overhead") else pool, "p50"
        ),
        "cold_start_nopool_p99_ms": _cold_figure(
            nopool if dig(nopool, "overhead") else pool, "p99"
        ),
        "cold_start_basis": dig(pool, "overhead_basis"),
        "sync_throughput_rps": thr.get("best_rps") if isinstance(thr, dict) else None,
        "sync_throughput_concurrency": thr.get("best_concurrency")
        if isinstance(thr, dict)
        else None,
        "async_throughput_eps": dig(sections.get("async"), "completed_eps"),
        "async_accepted_eps": dig(sections.get("async"), "accepted_eps"),
        "burst_served_s": dig(scale, "served_s"),
        "burst_peak_instances": dig(scale, "peak_instances"),
        "scale_down_s": dig(scale, "scale_down", "scale_down_s"),
        "scale_to_zero_s": dig(scale, "scale_down", "scale_to_zero_s"),
        "peer": {
            "name": peer.get("name") if isinstance(peer, dict) else None,
            "warm_p50_ms": dig(peer, "warm", "p50_ms"),
            "warm_p99_ms": dig(peer, "warm", "p99_ms"),
            "cold_start_p50_ms": dig(peer, "cold_start", "p50_ms"),
            "cold_start_p99_ms": dig(peer, "cold_start", "p99_ms"),
            "rps_c32": dig(peer, "throughput_c32", "rps"),
            "failed": peer.get("failed") if isinstance(peer, dict) else None,
        },
        "peer_async": {
            "name": dig(sections.get("peer_async"), "name"),
            "completed_eps": dig(sections.get("peer_async"), "completed_eps"),
            "accepted_eps": dig(sections.get("peer_async"), "accepted_eps"),
            "failed": dig(sections.get("peer_async"), "failed"),
        },
    }
    out["warm_overhead_ratio_to_grpc_floor"] = ratio(
        out["warm_overhead_p50_ms"], out["grpc_floor_p50_ms"]
    )
    return out


def verdicts(head: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in TARGETS:
        value = head.get(t.key)
        verdict = t.verdict(value)
        if t.key == "cold_start_p50_ms" and not head.get("cold_start_pool"):
            verdict = "n/a (no warm pool)"
        rows.append({"key": t.key, "target": t.text, "value": value, "verdict": verdict})
    peer_p50 = dig(head, "peer", "warm_p50_ms")
    ours = head.get("warm_rest_p50_ms")
    rows.append(
        {
            "key": "beat_peer_warm_p50",
            "target": "warm p50 end to end below the peer's",
            "value": ours,
            "verdict": "n/a"
            if peer_p50 is None or ours is None
            else ("met" if ours < peer_p50 else "NOT met"),
        }
    )
    return rows


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    value: float | None
    unit: str
    baseline_label: str
    baseline: float | None
    target: str = ""
    verdict: str = ""

    @property
    def ratio(self) -> float | None:
        return ratio(self.value, self.baseline)


def rows(head: dict[str, Any]) -> list[Row]:
    """The table: each of our figures beside a baseline measured in the same run."""
    v = {r["key"]: r for r in verdicts(head)}

    def tv(key: str) -> tuple[str, str]:
        r = v.get(key)
        return (r["target"], r["verdict"]) if r else ("", "")

    peer = head.get("peer") or {}
    pname = peer.get("name") or "peer"
    apeer = head.get("peer_async") or {}
    g50 = head.get("grpc_floor_p50_ms")
    return [
        Row(
            "warm overhead p50 (REST)",
            head.get("warm_overhead_p50_ms"),
            "ms",
            "bare gRPC p50",
            g50,
            *tv("warm_overhead_p50_ms"),
        ),
        Row(
            "warm overhead p99 (REST)",
            head.get("warm_overhead_p99_ms"),
            "ms",
            "bare gRPC p99",
            head.get("grpc_floor_p99_ms"),
            *tv("warm_overhead_p99_ms"),
        ),
        Row(
            "warm overhead p50 (gRPC)",
            head.get("warm_grpc_overhead_p50_ms"),
            "ms",
            "bare gRPC p50",
            g50,
        ),
        Row(
            "gRPC through Envoy p50 (floor)",
            head.get("grpc_envoy_floor_p50_ms"),
            "ms",
            "bare gRPC p50",
            g50,
        ),
        Row(
            "warm end to end p50 (REST)",
            head.get("warm_rest_p50_ms"),
            "ms",
            "plain HTTP, in process p50",
            head.get("http_floor_p50_ms"),
        ),
        Row(
            "warm end to end p50 (REST)",
            head.get("warm_rest_p50_ms"),
            "ms",
            f"{pname} warm p50",
            peer.get("warm_p50_ms"),
            *tv("beat_peer_warm_p50"),
        ),
        Row(
            "warm end to end p99 (REST)",
            head.get("warm_rest_p99_ms"),
            "ms",
            f"{pname} warm p99",
            peer.get("warm_p99_ms"),
        ),
        Row(
            "cold start p50",
            head.get("cold_start_p50_ms"),
            "ms",
            f"{pname} cold p50",
            peer.get("cold_start_p50_ms"),
            *tv("cold_start_p50_ms"),
        ),
        Row(
            "cold start p50, no pool",
            head.get("cold_start_nopool_p50_ms"),
            "ms",
            f"{pname} cold p50",
            peer.get("cold_start_p50_ms"),
            *tv("cold_start_nopool_p50_ms"),
        ),
        Row(
            "cold start p99, no pool",
            head.get("cold_start_nopool_p99_ms"),
            "ms",
            f"{pname} cold p99",
            peer.get("cold_start_p99_ms"),
        ),
        Row(
            "sync throughput (best, 0 errors)",
            head.get("sync_throughput_rps"),
            "req/s",
            "plain HTTP, in process, c=32",
            head.get("http_floor_rps_c32"),
            *tv("sync_throughput_rps"),
        ),
        Row(
            "sync throughput (best, 0 errors)",
            head.get("sync_throughput_rps"),
            "req/s",
            f"{pname} c=32",
            peer.get("rps_c32"),
        ),
        Row(
            "async events end to end",
            head.get("async_throughput_eps"),
            "events/s",
            f"{apeer.get('name') or 'async peer'} tasks end to end",
            apeer.get("completed_eps"),
            *tv("async_throughput_eps"),
        ),
        Row(
            "async events accepted",
            head.get("async_accepted_eps"),
            "events/s",
            f"{apeer.get('name') or 'async peer'} tasks sent",
            apeer.get("accepted_eps"),
        ),
        Row(
            "burst 0->50 of 200 ms: all served",
            head.get("burst_served_s"),
            "s",
            "one call (0.2 s)",
            0.2,
        ),
        Row("burst peak instances", head.get("burst_peak_instances"), "", "concurrency", 50.0),
        Row("scale-down after the burst to <= 1 instance", head.get("scale_down_s"), "s", "", None),
    ]


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, int) or (unit == "" and float(x).is_integer()):
        return f"{x:,.0f}"
    if unit in ("req/s", "events/s") or abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def table_text(head: dict[str, Any]) -> str:
    """A fixed-width table for the terminal."""
    cells = [("figure", "value", "baseline", "base", "ratio", "target", "verdict")]
    for r in rows(head):
        base = f"{_fmt(r.baseline, r.unit)} {r.unit}".strip() if r.baseline_label else "-"
        cells.append(
            (
                r.label,
                f"{_fmt(r.value, r.unit)} {r.unit}".strip(),
                r.baseline_label,
                base,
                "-" if r.ratio is None else f"{r.ratio:g}x",
                r.target,
                r.verdict,
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(c))).rstrip() for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_markdown(head: dict[str, Any]) -> str:
    out = [
        "| figure | value | baseline (same run) | ratio | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows(head):
        base = (
            f"{r.baseline_label}: {_fmt(r.baseline, r.unit)} {r.unit}".rstrip()
            if r.baseline_label
            else "-"
        )
        out.append(
            f"| {r.label} | {_fmt(r.value, r.unit)} {r.unit} | {base} | "
            f"{'-' if r.ratio is None else f'{r.ratio:g}x'} | {r.target or '-'} | "
            f"{r.verdict or '-'} |"
        )
    return "\n".join(out)


def skipped_notes(sections: dict[str, Any]) -> list[str]:
    """One line per section (or sub-section) that was skipped or failed, with its reason."""
    notes = []

    def walk(prefix: str, d: Any) -> None:
        if not isinstance(d, dict):
            return
        for key in ("skipped", "failed", "error"):
            if key in d and isinstance(d[key], str):
                text = d[key] if len(d[key]) <= 400 else d[key][:400] + " ..."
                notes.append(f"{prefix}: {key} — {text}")
        for k, sub in d.items():
            if isinstance(sub, dict):
                walk(f"{prefix}.{k}", sub)

    for name, sec in sections.items():
        walk(name, sec)
    return notes


def markdown(results: dict[str, Any]) -> str:
    head = results["headline"]
    meta = results["meta"]
    sections = results["sections"]
    lines = [
        "# Nimbus bench — latest run",
        "",
        f"Run {meta.get('started_at')} on {meta.get('machine')}, commit {meta.get('commit')}, "
        f"{'quick' if meta.get('quick') else 'full'} run, {meta.get('duration_s')} s; load average "
        f"before/after: {dig(meta, 'loadavg', 'before')} / {dig(meta, 'loadavg', 'after')} (other "
        "work on the machine skews absolute figures; the baselines were measured in the same run).",
        f"Reproduce: `{meta.get('command')}`.",
        "",
        table_markdown(head),
        "",
        f"- Warm overhead: {head.get('warm_overhead_basis')}; "
        f"{_fmt(head.get('warm_overhead_ratio_to_grpc_floor'))}x one bare gRPC round trip.",
        f"- Cold start: {head.get('cold_start_basis')}; import time: "
        f"{dig(sections, 'cold_start', 'import_time') or 'subtracted'}; warm pool in this build: "
        f"{'yes' if head.get('cold_start_pool') else 'no'}.",
    ]
    levels = dig(sections, "throughput", "levels") or []
    if levels:
        lines += [
            "",
            "| concurrency | req/s | p50 ms | p90 ms | p99 ms | errors |",
            "|---|---|---|---|---|---|",
        ]
        for lv in levels:
            lines.append(
                f"| {lv.get('concurrency')} | {_fmt(lv.get('rps'), 'req/s')} | "
                f"{_fmt(lv.get('p50_ms'))} | {_fmt(lv.get('p90_ms'))} | {_fmt(lv.get('p99_ms'))} | "
                f"{lv.get('errors')} |"
            )
    idle = dig(sections, "memory", "idle", "rss_mb") or {}
    load = dig(sections, "memory", "under_load", "rss_mb_peak") or {}
    if idle:
        lines += ["", "| process | RSS idle MB | RSS peak under load MB |", "|---|---|---|"]
        for name in idle:
            lines.append(f"| {name} | {_fmt(idle.get(name))} | {_fmt(load.get(name))} |")
        inst = dig(sections, "memory", "idle", "instances") or {}
        lines.append(
            f"| idle instances and pooled sandboxes (x{inst.get('count')}), min-max | "
            f"{_fmt(inst.get('rss_mb_min'))}-{_fmt(inst.get('rss_mb_max'))} | - |"
        )
        cg = dig(sections, "memory", "idle", "instance_cgroup") or {}
        lines += [
            "",
            "cgroup memory of one idle instance: "
            f"{_fmt(cg.get('usage_mb'))} MB ({cg.get('cgroup')})"
            if "usage_mb" in cg
            else f"cgroup memory of one idle instance: skipped — {cg.get('skipped')}",
        ]
    notes = skipped_notes(sections)
    if notes:
        lines += ["", "Skipped or failed:", ""] + [f"- {n}" for n in notes]
    lines += ["", "![latency and throughput](latest.png)", ""]
    return "\n".join(lines)
