"""The sections of the bench, one function each: (1) warm, (2) floors, (3) cold start,
(4) throughput, (5) async, (6) autoscaling, (7) memory, (8) peer, and the async peer.

Each takes the run's context and returns a plain dict of figures (milliseconds, requests/s,
events/s, MB), or {"skipped": reason} while the platform lacks what it measures, so the suite
grows with the platform: fill in the function, keep its keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench import celery_peer as celery_bench
from bench import floors as floor_bench
from bench import memory as mem
from bench import peer as peer_bench
from bench.cluster import HOST, INVOKE_METHOD, Target, config_default, invoke_request_b64
from bench.config import BenchConfig
from bench.functions import NOOP_SOURCE, SLEEP_200MS_SOURCE, create_body, unique_noop
from bench.load import LoadResult, run_job
from bench.loadgen import Job
from bench.stats import differences, summarize_us

DURATION_HEADER = "x-nimbus-duration-us"
INIT_HEADER = "x-nimbus-init-duration-us"
COLD_HEADER = "x-nimbus-cold-start"
ERROR_HEADER = "x-nimbus-function-error"
NOOP = "bench-noop"
SLEEPER = "bench-sleep200"
_BIG = 10**7


@dataclass(slots=True)
class Ctx:
    cfg: BenchConfig
    log: Callable[[str], None]
    target: Target | None = None
    pids: dict[str, int] = field(default_factory=dict)
    memory_idle: dict[str, Any] = field(default_factory=dict)
    memory_load: dict[str, Any] = field(default_factory=dict)

    def need_target(self) -> Target:
        assert self.target is not None, "this section needs a running cluster"
        return self.target


def skipped(reason: str) -> dict[str, Any]:
    return {"skipped": reason}


# -- helpers ------------------------------------------------------------------------------------


def _rest_job(t: Target, paths: tuple[str, ...], **kw: Any) -> Job:
    return Job(
        kind="http",
        host=HOST,
        port=t.port,
        paths=paths,
        headers=t.auth_headers(),
        capture=(DURATION_HEADER, INIT_HEADER, COLD_HEADER),
        fail_headers=(ERROR_HEADER,),
        **kw,
    )


def _grpc_job(t: Target, name: str, **kw: Any) -> Job:
    return Job(
        kind="grpc",
        host=HOST,
        port=t.port,
        grpc_method=INVOKE_METHOD,
        request_b64=invoke_request_b64(name),
        metadata=(("authorization", f"Bearer {t.api_key}"),),
        capture=(DURATION_HEADER, INIT_HEADER, COLD_HEADER),
        fail_headers=(ERROR_HEADER,),
        **kw,
    )


def overhead_figures(result: LoadResult, *, subtract_init: bool = False) -> dict[str, Any]:
    """End-to-end summary, the handler's own time, and the platform overhead = end-to-end minus
    the handler's duration (and its import time on a cold start) when the response reports them."""
    e2e = [float(v) for v in result.ok_lat_us()]
    handler = result.ok_header_us(DURATION_HEADER)
    out: dict[str, Any] = {"e2e": summarize_us(e2e), "errors": result.errors}
    if result.error_samples:
        out["error_samples"] = result.error_samples
    diffs = differences(e2e, handler)
    basis = (
        "end-to-end minus x-nimbus-duration-us (the handler's duration as the instance reports it)"
    )
    if diffs is None:
        diffs = e2e
        basis = (
            "end-to-end (the response has no x-nimbus-duration-us; "
            "a no-op handler's own time is included)"
        )
    else:
        out["handler"] = summarize_us([h or 0.0 for h in handler])
    if subtract_init:
        init = result.ok_header_us(INIT_HEADER)
        less_init = differences(diffs, init)
        if less_init is None:
            out["import_time"] = (
                "not reported by the response (no x-nimbus-init-duration-us): not subtracted"
            )
        else:
            diffs = less_init
            basis += ", minus x-nimbus-init-duration-us (the function's import time)"
            out["import"] = summarize_us([i or 0.0 for i in init])
    out["overhead"] = summarize_us(diffs)
    out["overhead_basis"] = basis
    return out


async def setup(ctx: Ctx) -> None:
    """Deploys the no-op function and warms it; remembers the PIDs of the cluster's programs."""
    t = ctx.need_target()
    await t.create_function(create_body(NOOP, NOOP_SOURCE))
    warm = await run_job(_rest_job(t, (t.invoke_path(NOOP),), count=20, duration_s=30))
    if warm.ok_count == 0:
        first = warm.error_samples[0] if warm.error_samples else "no answer"
        raise RuntimeError(
            f"the no-op function does not answer ({warm.errors} of 20 calls failed): {first[:300]}"
        )
    ctx.pids = {name: t.cluster.pid(name) for name in t.cluster.names}


# -- (1) warm -----------------------------------------------------------------------------------


async def warm(ctx: Ctx) -> dict[str, Any]:
    t = ctx.need_target()
    cfg = ctx.cfg
    out: dict[str, Any] = {
        "function": NOOP,
        "calls": cfg.warm_calls,
        "warmup_calls": cfg.warmup_calls,
    }
    ctx.log(f"bench: warm: {cfg.warm_calls} sequential REST calls")
    rest = await run_job(
        _rest_job(
            t,
            (t.invoke_path(NOOP),),
            count=cfg.warm_calls,
            duration_s=300,
            warmup_calls=cfg.warmup_calls,
            warmup_s=30,
        )
    )
    out["rest"] = overhead_figures(rest)
    ctx.log(f"bench: warm: {cfg.warm_calls} sequential gRPC calls")
    grpc = await run_job(
        _grpc_job(
            t,
            NOOP,
            count=cfg.warm_calls,
            duration_s=300,
            warmup_calls=cfg.warmup_calls,
            warmup_s=30,
        )
    )
    out["grpc"] = overhead_figures(grpc)
    return out


# -- (2) floors ---------------------------------------------------------------------------------


async def floors(ctx: Ctx) -> dict[str, Any]:
    return await floor_bench.measure(ctx.cfg, invoke_request_b64(NOOP), ctx.log)


# -- (3) cold start -----------------------------------------------------------------------------


async def cold_start(ctx: Ctx, label: str) -> dict[str, Any]:
    """The first call of cfg.cold_functions freshly created functions (each with its own code
    package, published before the first call), one after another."""
    t = ctx.need_target()
    n = ctx.cfg.cold_functions
    names = [f"cold-{label}-{i}" for i in range(n)]
    ctx.log(f"bench: cold start ({label}): creating {n} functions")
    for i, name in enumerate(names):
        await t.create_function(create_body(name, unique_noop(i)))
    # Publishing lets nodes pre-fetch code; give that a moment, as a deploy would have.
    await asyncio.sleep(1.0)
    # Each first call is made once the nodes' warm pools are back to what they held before the
    # first one (the pool refills in the background), so "with the warm pool" measures calls that
    # had one: first calls back to back would drain it and measure the no-pool path instead.
    pool = await t.warm_sandboxes()
    ctx.log(
        f"bench: cold start ({label}): first call of each, "
        f"each once {pool} warm sandboxes are ready"
    )
    results = []
    for name in names:
        refilled = await t.wait_warm_sandboxes(pool, timeout_s=10.0)
        if not refilled:
            ctx.log(
                f"bench: cold start ({label}): the warm pool was "
                f"not back to {pool} within 10 s; calling anyway"
            )
        results.append(
            await run_job(
                _rest_job(t, (t.invoke_path(name),), count=1, duration_s=120, call_timeout_s=60)
            )
        )
    result = LoadResult.concat(results)
    out = overhead_figures(result, subtract_init=True)
    out["warm_sandboxes_before_each_call"] = pool
    flags = result.ok_header(COLD_HEADER)
    out["functions"] = n
    out["reported_cold"] = sum(1 for f in flags if f == "true")
    out["env"] = dict(t.env)
    return out


# -- (4) throughput -----------------------------------------------------------------------------


async def throughput(ctx: Ctx) -> dict[str, Any]:
    """Warm sync invokes/s of the no-op at each concurrency,
    REST, closed loop; memory sampled meanwhile."""
    t = ctx.need_target()
    cfg = ctx.cfg
    levels: list[dict[str, Any]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(mem.sample_peak(lambda: ctx.pids, stop))
    try:
        for c in cfg.concurrency_levels:
            ctx.log(f"bench: throughput: concurrency {c} for {cfg.load_s:g} s")
            res = await run_job(
                _rest_job(
                    t,
                    (t.invoke_path(NOOP),),
                    concurrency=c,
                    count=_BIG,
                    duration_s=cfg.load_s,
                    warmup_calls=c * 10,
                    warmup_s=5,
                )
            )
            levels.append(
                {
                    "concurrency": c,
                    "rps": res.rps(),
                    "calls": len(res.ok),
                    "errors": res.errors,
                    "warmup_errors": res.warmup_errors,
                    "error_samples": res.error_samples,
                    **summarize_us(res.ok_lat_us()),
                }
            )
    finally:
        stop.set()
        ctx.memory_load = {"rss_mb_peak": await sampler}
    zero = [lv for lv in levels if lv["errors"] == 0 and lv["calls"] > 0]
    best = max(zero, key=lambda lv: lv["rps"]) if zero else None
    return {
        "levels": levels,
        "seconds_per_level": cfg.load_s,
        "best_rps": best["rps"] if best else None,
        "best_concurrency": best["concurrency"] if best else None,
    }


# -- (5) async ----------------------------------------------------------------------------------


async def async_invoke(ctx: Ctx) -> dict[str, Any]:
    """Events/s accepted and completed end to end. Skipped while :invokeAsync is not served."""
    t = ctx.need_target()
    submit_path = f"/v1/functions/{NOOP}:invokeAsync"
    res = await t.request("POST", submit_path, {})
    if res.status != 200:
        return skipped(
            f"POST :invokeAsync answers HTTP {res.status} "
            f"{res.body[:120].decode(errors='replace')} (async invoke is issue 6)"
        )
    n = 200 if ctx.cfg.quick else 2000
    ctx.log(f"bench: async: submitting {n} events")
    submit = await run_job(
        Job(
            kind="http",
            host=HOST,
            port=t.port,
            paths=(submit_path,),
            headers=t.auth_headers(),
            concurrency=32,
            count=n,
            duration_s=120,
            keep_body=True,
        )
    )
    ids = [str(json.loads(b).get("invocation_id", "")) for b in submit.ok_bodies()]
    await _wait_drained(t, bound_s=120.0, log=ctx.log)
    done = await _wait_completed(t, [i for i in ids if i], bound_s=120.0)
    finished = [ts for ts in done.values() if ts is not None]
    span = max(finished) - submit.started_at if finished else None
    return {
        "events": n,
        "accepted": submit.ok_count,
        "errors": submit.errors,
        "error_samples": submit.error_samples,
        "accepted_eps": submit.rps(),
        "completed": len(finished),
        "completed_eps": round(len(finished) / span, 1) if span else None,
        "note": "completed = SUCCEEDED or FAILED; completion time from each record's updated_at",
    }


async def _wait_drained(t: Target, bound_s: float, log: Callable[[str], None]) -> None:
    """Until the invokers' shared JetStream consumer has nothing pending or unacked, i.e. every
    stored event has finished. Reading the records only then keeps the measurement off the path
    it measures: polling each pending record meanwhile is thousands of GETs through the gateway
    and the invokers while they run the events."""
    import nats

    deadline = time.monotonic() + bound_s
    try:
        nc = await nats.connect(f"nats://{HOST}:{t.cluster.ports['nats']}", **t.cluster.nats_tls())
    except Exception as err:
        log(f"bench: async: NATS not reachable ({err}); polling the records instead")
        return
    try:
        js = nc.jetstream()
        while time.monotonic() < deadline:
            info = await js.consumer_info("NIMBUS_EVENTS", "invokers")
            if not info.num_pending and not info.num_ack_pending:
                return
            await asyncio.sleep(0.1)
    except Exception as err:
        log(
            "bench: async: the events consumer could not "
            f"be read ({err}); polling the records instead"
        )
    finally:
        await nc.close()


async def _wait_completed(t: Target, ids: list[str], bound_s: float) -> dict[str, float | None]:
    """invocation id -> epoch seconds it reached SUCCEEDED or FAILED
    (None if not within bound_s)."""
    done: dict[str, float | None] = {i: None for i in ids}
    pending = list(ids)
    deadline = time.monotonic() + bound_s
    while pending and time.monotonic() < deadline:
        res = await run_job(
            Job(
                kind="http",
                host=HOST,
                port=t.port,
                method="GET",
                body="",
                paths=tuple(f"/v1/invocations/{i}" for i in pending),
                headers=t.auth_headers(),
                concurrency=16,
                count=len(pending),
                duration_s=60,
                keep_body=True,
            )
        )
        still: list[str] = []
        seen: set[str] = set()
        for index, ok, body in zip(res.index, res.ok, res.bodies, strict=True):
            inv_id = pending[index % len(pending)]
            seen.add(inv_id)
            record = json.loads(body) if ok and body else {}
            if record.get("status") in ("SUCCEEDED", "FAILED"):
                done[inv_id] = _epoch(str(record.get("updated_at", "")))
            else:
                still.append(inv_id)
        pending = still + [i for i in pending if i not in seen]
        if pending:
            await asyncio.sleep(0.5)
    return done


def _epoch(stamp: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return time.time()


# -- (6) autoscaling ----------------------------------------------------------------------------


async def autoscale(ctx: Ctx) -> dict[str, Any]:
    """A 0 -> N concurrent burst of a 200 ms function: time until all are served, peak instances,
    and the time back down to min_instances (0) after it, within a bound."""
    t = ctx.need_target()
    cfg = ctx.cfg
    await t.create_function(create_body(SLEEPER, SLEEP_200MS_SOURCE, timeout_s=10))
    stop = asyncio.Event()
    peak = 0

    async def count_instances() -> None:
        nonlocal peak
        deadline = time.monotonic() + 300
        while not stop.is_set() and time.monotonic() < deadline:
            peak = max(peak, sum(1 for f in await t.instance_functions() if f == SLEEPER))
            await asyncio.sleep(0.1)

    ctx.log(
        f"bench: autoscale: burst of {cfg.burst_concurrency} concurrent calls of a 200 ms function"
    )
    counter = asyncio.create_task(count_instances())
    try:
        burst = await run_job(
            _rest_job(
                t,
                (t.invoke_path(SLEEPER),),
                concurrency=cfg.burst_concurrency,
                count=cfg.burst_concurrency,
                duration_s=120,
                call_timeout_s=60,
            )
        )
    finally:
        stop.set()
        await counter
    at_served = sum(1 for f in await t.instance_functions() if f == SLEEPER)
    out: dict[str, Any] = {
        "concurrency": cfg.burst_concurrency,
        "handler_ms": cfg.burst_sleep_ms,
        "served": burst.ok_count,
        "errors": burst.errors,
        "error_samples": burst.error_samples,
        "served_s": round(burst.elapsed_s, 3) if burst.ok_count == cfg.burst_concurrency else None,
        "peak_instances_during_burst": max(peak, at_served),
        "instances_when_served": at_served,
        "latency": summarize_us(burst.ok_lat_us()),
        "cold_starts": sum(1 for f in burst.ok_header(COLD_HEADER) if f == "true"),
    }
    out["scale_down"] = await _scale_down(ctx, t)
    # Instances asked for during the burst may become ready only after it: the peak counts them too.
    out["peak_instances"] = max(
        out["peak_instances_during_burst"], out["scale_down"].pop("max_seen", 0)
    )
    return out


async def _scale_down(ctx: Ctx, t: Target) -> dict[str, Any]:
    """Seconds from the end of the burst until at most one instance is left (the one a platform may
    keep warm), and until none is, within the bound."""
    bound = ctx.cfg.scaledown_wait_s
    t0 = time.monotonic()
    out: dict[str, Any] = {"bound_s": bound}
    left = -1
    max_seen = 0
    while time.monotonic() - t0 <= bound:
        left = sum(1 for f in await t.instance_functions() if f == SLEEPER)
        max_seen = max(max_seen, left)
        out["max_seen"] = max_seen
        if left <= 1 and "scale_down_s" not in out:
            out["scale_down_s"] = round(time.monotonic() - t0, 2)
        if left == 0:
            out["scale_to_zero_s"] = round(time.monotonic() - t0, 2)
            return out
        await asyncio.sleep(0.5)
    out["instances_left"] = left
    if "scale_down_s" not in out:
        knobs = ", ".join(
            f"{var}={t.env.get(var) or config_default(svc, var) or '?'}"
            for svc, var in (
                ("scheduler", "NIMBUS_SCALE_STABLE_WINDOW_S"),
                ("nodeagent", "NIMBUS_INSTANCE_IDLE_S"),
            )
            if config_default(svc, var) or var in t.env
        )
        out["skipped"] = (
            f"not back to min within {bound:g} s ({left} instances left); "
            f"the platform's scale-down settings: {knobs or 'none found'}"
        )
    return out


# -- (7) memory ---------------------------------------------------------------------------------


def memory_idle(ctx: Ctx) -> None:
    """RSS of every program at idle, and of the idle warm instances
    (their cgroup when they have one)."""
    agents = {n: p for n, p in ctx.pids.items() if n.startswith("node-agent")}
    # An instance (or a pooled sandbox) is a child of its agent running a runtime's bootstrap
    # script; under runc too, as the agent is the containers' child subreaper.
    instances = [pid for p in agents.values() for pid in mem.children(p, "bootstrap.")]
    inst_rss = [r for r in (mem.rss_mb(pid) for pid in instances) if r is not None]
    cgroup: dict[str, Any]
    if not instances:
        cgroup = skipped("no instance process found under the node-agent")
    else:
        own, agent_cg = (
            mem.memory_cgroup(instances[0]),
            mem.memory_cgroup(next(iter(agents.values()))),
        )
        if own is None or own == agent_cg:
            cgroup = skipped(
                "instances run in the node-agent's own cgroup (process sandbox; runc is issue 4)"
            )
        else:
            cgroup = {"cgroup": own, "usage_mb": mem.cgroup_usage_mb(own)}
    ctx.memory_idle = {
        "rss_mb": mem.snapshot(ctx.pids),
        "instances": {
            "count": len(instances),
            "rss_mb_min": min(inst_rss, default=None),
            "rss_mb_max": max(inst_rss, default=None),
        },
        "instance_cgroup": cgroup,
    }


async def memory(ctx: Ctx) -> dict[str, Any]:
    if not ctx.memory_idle:
        return skipped("no idle sample was taken")
    return {
        "idle": ctx.memory_idle,
        "under_load": ctx.memory_load or skipped("the throughput section did not run"),
        "note": (
            "RSS from /proc/<pid>/status VmRSS; under load = the peak during the throughput section"
        ),
    }


# -- (8) peer -----------------------------------------------------------------------------------


async def peer(ctx: Ctx) -> dict[str, Any]:
    python = os.environ.get("NIMBUS_PYTHON") or _node_python()
    try:
        return await peer_bench.measure(ctx.cfg, python, ctx.log)
    except peer_bench.PeerUnavailable as err:
        return {
            "name": peer_bench.NAME,
            "tried": [f"npm {' '.join(peer_bench.PACKAGES)}"],
            "failed": str(err),
        }


def _node_python() -> str:
    from nimbus.nodeagent.config import default_python

    return str(default_python())


async def async_peer(ctx: Ctx) -> dict[str, Any]:
    """Celery on Redis completing the same number of no-op tasks as the async section's events."""
    n = 200 if ctx.cfg.quick else 2000
    try:
        return await celery_bench.measure(ctx.cfg, n, ctx.log)
    except celery_bench.PeerUnavailable as err:
        return {
            "name": celery_bench.NAME,
            "tried": [f"pip {celery_bench.PACKAGE} in the bench cache"],
            "failed": str(err),
        }
