"""`make bench`: runs every section in order, writes the results, prints the table.

Order: the floors first (nothing else running), then one cluster for the Nimbus sections, then a
second cluster without the warm pool for its cold start (only when the node-agent has a pool), then
the peer alone. Timing never fails the run; a section that crashes is recorded as {"error": ...}
and makes the exit status 1, so the smoke run catches a bench that rotted.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import charting, report, sections
from bench.cluster import WARM_POOL_VAR, node_agent_honours, running
from bench.config import REPO, BenchConfig, BenchConfigError, from_os
from bench.sections import Ctx, skipped

Section = Callable[[Ctx], Awaitable[dict[str, Any]]]


def say(line: str) -> None:
    print(line, flush=True)


async def run_section(
    ctx: Ctx, name: str, fn: Section, timings: dict[str, float]
) -> dict[str, Any]:
    if not ctx.cfg.wants(name.removesuffix("_nopool")):
        return skipped("not selected (NIMBUS_BENCH_SECTIONS)")
    t0 = time.monotonic()
    try:
        return await fn(ctx)
    except Exception as err:  # one broken section must not lose the others' figures
        traceback.print_exc()
        say(f"bench: {name}: error: {type(err).__name__}: {err}")
        return {"error": f"{type(err).__name__}: {err}"}
    finally:
        timings[name] = round(time.monotonic() - t0, 1)


async def _with_cluster(
    ctx: Ctx,
    env: dict[str, str],
    plan: list[tuple[str, Section]],
    out: dict[str, Any],
    timings: dict[str, float],
    *,
    idle_sample: bool = False,
) -> None:
    """Starts a cluster, runs the plan's sections on it, stops it. A cluster that does not start
    is an error of every section of the plan."""
    if not any(ctx.cfg.wants(name.removesuffix("_nopool")) for name, _ in plan):
        for name, _ in plan:
            out[name] = skipped("not selected (NIMBUS_BENCH_SECTIONS)")
        return
    try:
        async with running(env, keep_home=ctx.cfg.keep_home, log=say) as target:
            ctx.target = target
            await sections.setup(ctx)
            if idle_sample:
                sections.memory_idle(ctx)
            for name, fn in plan:
                out[name] = await run_section(ctx, name, fn, timings)
    except Exception as err:
        traceback.print_exc()
        first = None
        for name, _ in plan:
            if name in out:
                continue
            # The cause once, in the first section it stopped; the others point there.
            out[name] = {
                "error": f"cluster: {type(err).__name__}: {err}"
                if first is None
                else f"cluster failed, see {first}"
            }
            first = first or name
    finally:
        ctx.target = None


async def run(cfg: BenchConfig) -> dict[str, Any]:
    started = datetime.now(UTC)
    t0 = time.monotonic()
    ctx = Ctx(cfg, say)
    out: dict[str, Any] = {}
    timings: dict[str, float] = {}
    pool = node_agent_honours(WARM_POOL_VAR)
    load_before = loadavg()
    if load_before and load_before[0] > (os.cpu_count() or 1):
        say(
            f"bench: the machine is busy (load {load_before[0]:.1f} on {os.cpu_count()} cores): "
            "absolute figures will be noisy; compare them with the baselines of the same run"
        )
    say(
        f"bench: {'quick' if cfg.quick else 'full'} run; warm pool in the node-agent: "
        f"{'yes (' + WARM_POOL_VAR + ')' if pool else 'no'}"
    )

    out["floors"] = await run_section(ctx, "floors", sections.floors, timings)

    async def cold(c: Ctx) -> dict[str, Any]:
        return {**await sections.cold_start(c, "pool" if pool else "nopool"), "warm_pool": pool}

    main_env = {WARM_POOL_VAR: cfg.warm_pool_size} if pool and cfg.warm_pool_size else {}
    await _with_cluster(
        ctx,
        main_env,
        [
            ("warm", sections.warm),
            ("cold_start", cold),
            ("throughput", sections.throughput),
            ("async", sections.async_invoke),
            ("autoscale", sections.autoscale),
            ("memory", sections.memory),
        ],
        out,
        timings,
        idle_sample=True,
    )

    if pool:

        async def cold_nopool(c: Ctx) -> dict[str, Any]:
            return {**await sections.cold_start(c, "nopool"), "warm_pool": False}

        await _with_cluster(
            ctx, {WARM_POOL_VAR: "0"}, [("cold_start_nopool", cold_nopool)], out, timings
        )
    else:
        out["cold_start_nopool"] = {
            "same_as": "cold_start",
            "note": f"the node-agent does not read {WARM_POOL_VAR} yet: the one "
            "cold-start run is without a pool",
        }

    out["peer"] = await run_section(ctx, "peer", sections.peer, timings)
    out["peer_async"] = await run_section(ctx, "peer_async", sections.async_peer, timings)

    results: dict[str, Any] = {"sections": out}
    results["headline"] = report.headline(out)
    results["targets"] = report.verdicts(results["headline"])
    results["meta"] = meta(cfg, started, round(time.monotonic() - t0, 1), timings)
    results["meta"]["loadavg"] = {"before": load_before, "after": loadavg()}
    return results


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine skews every figure)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return []


def meta(
    cfg: BenchConfig, started: datetime, duration_s: float, timings: dict[str, float]
) -> dict[str, Any]:
    return {
        "started_at": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": duration_s,
        "section_seconds": timings,
        "quick": cfg.quick,
        "command": ("NIMBUS_BENCH_QUICK=1 " if cfg.quick else "") + "make bench",
        "machine": machine(),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": sys.version.split()[0],
        "config": {
            "warm_calls": cfg.warm_calls,
            "cold_functions": cfg.cold_functions,
            "load_s": cfg.load_s,
            "concurrency_levels": list(cfg.concurrency_levels),
            "sections": list(cfg.sections),
        },
    }


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores {cpu}, {mem_gib:.0f} GiB, {system}".strip()


def _git(*args: str) -> str:
    try:
        # --no-optional-locks: a read never rewrites the index of the checkout.
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


async def write(results: dict[str, Any], cfg: BenchConfig) -> list[Path]:
    d = cfg.results_dir
    d.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2, sort_keys=True) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    paths = [d / "latest.json", d / f"{stamp}{'-quick' if cfg.quick else ''}.json", d / "latest.md"]
    paths[0].write_text(text)
    paths[1].write_text(text)
    png = d / "latest.png"
    try:
        python = await charting.draw(results, png, cfg, say)
        results["meta"]["chart"] = {"path": str(png), "python": python}
        paths.append(png)
    except Exception as err:
        results["meta"]["chart"] = {"error": str(err)}
        say(f"bench: chart: not drawn: {err}")
    paths[2].write_text(report.markdown(results))
    # The chart's outcome goes into the JSON too.
    text = json.dumps(results, indent=2, sort_keys=True) + "\n"
    paths[0].write_text(text)
    paths[1].write_text(text)
    return paths


def main() -> None:
    try:
        cfg = from_os()
    except BenchConfigError as err:
        raise SystemExit(f"bench: {err}") from None
    results = asyncio.run(run(cfg))
    paths = asyncio.run(write(results, cfg))
    say("")
    say(report.table_text(results["headline"]))
    notes = report.skipped_notes(results["sections"])
    if notes:
        say("")
        for n in notes:
            say(f"  {n}")
    say("")
    shown = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths]
    say(f"bench: {results['meta']['duration_s']} s; wrote {', '.join(shown)}")
    errors = [
        name
        for name, sec in results["sections"].items()
        if isinstance(sec, dict) and "error" in sec
    ]
    if errors:
        say(f"bench: sections with errors: {', '.join(errors)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
