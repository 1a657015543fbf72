"""The configs the bench writes for its floors and its peer, and the chart's data: pure builders."""

import json

from bench.charting import chart_data
from bench.floors import envoy_config
from bench.peer import service_definition


def test_envoy_floor_proxies_h2c_from_the_listener_to_the_echo_server():
    conf = envoy_config(1000, 2000, 3000)
    listener = conf["static_resources"]["listeners"][0]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 1000}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["codec_type"] == "AUTO"
    cluster = conf["static_resources"]["clusters"][0]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 2000
    options = cluster["typed_extension_protocol_options"]
    assert "http2_protocol_options" in next(iter(options.values()))["explicit_http_config"]
    assert conf["admin"]["address"]["socket_address"]["port_value"] == 3000
    json.dumps(conf)  # written as JSON


def test_peer_service_has_the_warm_function_and_one_per_cold_start():
    svc = service_definition(4000, 4001, ["cold_0", "cold_1"])
    assert svc["provider"]["runtime"] == "python3.11" and svc["frameworkVersion"] == "3"
    assert svc["custom"]["serverless-offline"]["httpPort"] == 4000
    assert svc["custom"]["serverless-offline"]["host"] == "127.0.0.1"
    assert set(svc["functions"]) == {"noop", "cold_0", "cold_1"}
    assert svc["functions"]["cold_1"] == {
        "handler": "cold_1.handler",
        "events": [{"httpApi": {"path": "/cold_1", "method": "post"}}],
    }


def test_chart_data_keeps_only_measured_series():
    results = {
        "meta": {"started_at": "t", "machine": "m"},
        "headline": {"http_floor_rps_c32": 9000.0, "peer": {"rps_c32": None}},
        "sections": {
            "floors": {"grpc_bare": {"p50_ms": 0.5, "p90_ms": 0.6, "p99_ms": 1.0}},
            "warm": {"rest": {"e2e": {"n": 0}}},
            "throughput": {
                "levels": [
                    {"concurrency": 1, "rps": 300.0, "p50_ms": 3.0, "p99_ms": 9.0, "calls": 10},
                    {"concurrency": 8, "rps": 0.0, "calls": 0},
                ]
            },
        },
    }
    data = chart_data(results)
    assert list(data["latency"]) == ["bare gRPC"]
    assert data["throughput"] == [{"concurrency": 1, "rps": 300.0, "p50_ms": 3.0, "p99_ms": 9.0}]
    assert data["baselines_rps"]["plain HTTP in process c=32"] == 9000.0
