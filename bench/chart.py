"""Renders the bench chart (PNG) with matplotlib. Run as a script by bench.charting, possibly under
another interpreter (the chart venv), so it imports nothing of the repo:

    python bench/chart.py CHART_DATA.json OUT.png

CHART_DATA: {"title": str, "latency": {label: {"p50_ms", "p90_ms", "p99_ms"}},
             "throughput": [{"concurrency", "rps", "p50_ms", "p99_ms"}],
             "baselines_rps": {label: rps}}
"""

from __future__ import annotations

import json
import sys
from typing import Any


def render(data: dict[str, Any], out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    labels = list(data["latency"])
    pcts = ("p50_ms", "p90_ms", "p99_ms")
    width = 0.27
    for i, p in enumerate(pcts):
        xs = [j + (i - 1) * width for j in range(len(labels))]
        left.bar(xs, [data["latency"][lb].get(p) or 0 for lb in labels], width, label=p[:3])
    left.set_xticks(range(len(labels)))
    left.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
    left.set_ylabel("ms (log)")
    left.set_yscale("log")
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    left.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_title("warm latency, sequential calls")
    left.legend()

    levels = data.get("throughput") or []
    if levels:
        cs = [lv["concurrency"] for lv in levels]
        right.plot(cs, [lv["rps"] for lv in levels], "o-", label="Nimbus req/s (REST)")
        for name, rps in (data.get("baselines_rps") or {}).items():
            if rps:
                right.axhline(
                    rps,
                    linestyle="--",
                    linewidth=1,
                    label=f"{name}: {rps:,.0f} req/s",
                    color="gray",
                )
        right.set_xscale("log", base=2)
        right.set_xticks(cs)
        right.set_xticklabels([str(c) for c in cs])
        right.set_xlabel("concurrency")
        right.set_ylabel("req/s (log)")
        right.set_yscale("log")
        right.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        twin = right.twinx()
        twin.plot(
            cs, [lv.get("p50_ms") or 0 for lv in levels], "s:", color="tab:green", label="p50 ms"
        )
        twin.plot(
            cs, [lv.get("p99_ms") or 0 for lv in levels], "^:", color="tab:red", label="p99 ms"
        )
        twin.set_ylabel("latency ms")
        twin.set_ylim(bottom=0)
        lines = right.get_legend_handles_labels()
        more = twin.get_legend_handles_labels()
        right.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    right.set_title("throughput against concurrency")
    fig.suptitle(data.get("title", "Nimbus bench"))
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python bench/chart.py CHART_DATA.json OUT.png")
    with open(sys.argv[1]) as f:
        render(json.load(f), sys.argv[2])


if __name__ == "__main__":
    main()
