"""The gateway's control plane, pure parts: route weights, xDS rendering, atomic file writes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import yaml
from nimbus.cluster import envoy, spec
from nimbus.common.registry import DRAINING, Rollout, ServiceEndpoint
from nimbus.gateway import xds
from nimbus.gateway.stores.files import XdsDirectory
from nimbus.gateway.weights import TOTAL, integer_weights, shares

RELEASE = {"api_v1": "v1", "api_v2": "v2"}
CLUSTERS = ("api_v1", "api_v2")


@pytest.mark.parametrize(
    "replicas,rollout,want",
    [
        # no rollout: by replica count, as one pool would
        ({"api_v1": 2, "api_v2": 2}, None, {"api_v1": 0.5, "api_v2": 0.5}),
        ({"api_v1": 1, "api_v2": 3}, None, {"api_v1": 0.25, "api_v2": 0.75}),
        ({"api_v2": 2}, None, {"api_v1": 0.0, "api_v2": 1.0}),
        # the rollout's release gets its weight, the others the rest
        ({"api_v1": 2, "api_v2": 2}, Rollout("api", "v2", 0.1), {"api_v1": 0.9, "api_v2": 0.1}),
        ({"api_v1": 2, "api_v2": 2}, Rollout("api", "v2", 0.0), {"api_v1": 1.0, "api_v2": 0.0}),
        ({"api_v1": 2, "api_v2": 2}, Rollout("api", "v2", 1.0), {"api_v1": 0.0, "api_v2": 1.0}),
        ({"api_v1": 2, "api_v2": 2}, Rollout("api", "v1", 0.3), {"api_v1": 0.3, "api_v2": 0.7}),
        # safety: a release with no replica gets nothing, whatever the rollout says
        ({"api_v1": 2}, Rollout("api", "v2", 1.0), {"api_v1": 1.0, "api_v2": 0.0}),
        ({"api_v2": 2}, Rollout("api", "v2", 0.0), {"api_v1": 0.0, "api_v2": 1.0}),
        # nobody at all: the newest cluster (503 there), never a zero sum
        ({}, Rollout("api", "v2", 0.5), {"api_v1": 0.0, "api_v2": 1.0}),
        # an out-of-range weight is clamped
        ({"api_v1": 1, "api_v2": 1}, Rollout("api", "v2", 7.0), {"api_v1": 0.0, "api_v2": 1.0}),
    ],
)
def test_shares(replicas, rollout, want):
    got = shares(CLUSTERS, replicas, rollout, RELEASE)
    assert got == pytest.approx(want)
    assert sum(got.values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "fractions,want",
    [
        ({"a": 0.1, "b": 0.9}, {"a": 100, "b": 900}),
        ({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, {"a": 334, "b": 333, "c": 333}),
        ({"a": 0.0001, "b": 0.9999}, {"a": 1, "b": 999}),
        ({"a": 0.0, "b": 1.0}, {"a": 0, "b": 1000}),
        ({"a": 0.0, "b": 0.0}, {"a": 0, "b": 1000}),
    ],
)
def test_integer_weights_sum_to_the_total(fractions, want):
    got = integer_weights(fractions)
    assert got == want and sum(got.values()) == TOTAL


def ep(
    service: str, replica: str, port: int, versions=("v1", "v2"), state="SERVING"
) -> ServiceEndpoint:
    return ServiceEndpoint(service, replica, f"127.0.0.1:{port}", tuple(versions), state)


def test_build_puts_each_replica_in_its_release_cluster():
    records = [
        ep("api", "api-2", 2),
        ep("api", "api-1", 1),
        ep("api", "old", 3, ("v1",)),
        ep("invoker", "invoker-1", 4),
        ep("funcmgr", "funcmgr", 5, ()),
        ep("api", "leaving", 6, state=DRAINING),
    ]
    snap = xds.build(records, {})
    assert [e.replica for e in snap.endpoints["api_v2"]] == ["api-1", "api-2"]
    assert [e.replica for e in snap.endpoints["api_v1"]] == ["old"]
    assert [e.replica for e in snap.endpoints["invoker_v2"]] == ["invoker-1"]
    assert snap.endpoints["invoker_v1"] == ()
    assert set(snap.endpoints) == {"api_v1", "api_v2", "invoker_v1", "invoker_v2", "invoker_http"}
    # v1 calls of api: 1 old replica and 2 new ones; v2 calls only where v2 is spoken
    assert snap.weights["nimbus.routes.api.v1.api_v1"] == 333
    assert snap.weights["nimbus.routes.api.v1.api_v2"] == 667
    assert snap.weights["nimbus.routes.api.v2.api_v2"] == 1000
    assert snap.weights["nimbus.routes.invoker.v1.invoker_v2"] == 1000


def test_invokers_http_listeners_form_their_own_cluster():
    with_http = replace(ep("invoker", "invoker-1", 4), http_address="127.0.0.1:9404")
    records = [
        with_http,
        ep("invoker", "invoker-2", 5),
        replace(with_http, replica="gone", state=DRAINING),
    ]
    snap = xds.build(records, {})
    assert [(e.replica, e.address) for e in snap.endpoints["invoker_http"]] == [
        ("invoker-1", "127.0.0.1:9404")
    ]
    assert [e.replica for e in snap.endpoints["invoker_v2"]] == ["invoker-1", "invoker-2"]
    assert "nimbus.routes.invoker.v1.invoker_http" not in snap.weights


def test_files_are_discovery_responses_with_the_v3_types():
    files = xds.files(xds.build([ep("api", "api-1", 7101)], {"api": Rollout("api", "v2", 1.0)}))
    assert set(files) == {
        "eds_api_v1.json",
        "eds_api_v2.json",
        "eds_invoker_v1.json",
        "eds_invoker_v2.json",
        "eds_invoker_http.json",
        "rtds.json",
    }
    eds = json.loads(files["eds_api_v2.json"])
    (resource,) = eds["resources"]
    assert resource["@type"] == "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    assert resource["cluster_name"] == "api_v2"
    (host,) = resource["endpoints"][0]["lb_endpoints"]
    assert host["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 7101,
    }
    assert host["endpoint"]["hostname"] == "api-1"
    assert json.loads(files["eds_api_v1.json"])["resources"][0]["endpoints"] == []
    rtds = json.loads(files["rtds.json"])["resources"][0]
    assert (
        rtds["@type"] == "type.googleapis.com/envoy.service.runtime.v3.Runtime"
        and rtds["name"] == xds.RTDS_LAYER
    )
    # the same input renders the same bytes (so nothing is rewritten needlessly), a change a new
    # version
    again = xds.files(xds.build([ep("api", "api-1", 7101)], {"api": Rollout("api", "v2", 1.0)}))
    assert again == files
    moved = xds.files(xds.build([ep("api", "api-1", 7102)], {}))
    assert json.loads(moved["eds_api_v2.json"])["version_info"] != eds["version_info"]


def test_the_envoy_template_routes_match_what_the_gateway_writes(tmp_path):
    """Every weighted route of the template names the clusters and runtime prefix xds.py weighs,
    every cluster reads its EDS file, and the runtime layer reads rtds.json."""
    cluster_spec = spec.load()
    text = envoy.render(
        cluster_spec,
        {n: 20000 + i for i, n in enumerate(cluster_spec.port_names)},
        18000,
        xds_dir=tmp_path,
    )
    config = yaml.safe_load(text)
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    # The console's routes answer from Envoy itself (direct_response, redirect): no upstream.
    routes = [r for r in hcm["route_config"]["virtual_hosts"][0]["routes"] if "route" in r]
    weighted = {
        r["route"]["weighted_clusters"]["runtime_key_prefix"]: [
            c["name"] for c in r["route"]["weighted_clusters"]["clusters"]
        ]
        for r in routes
        if "weighted_clusters" in r["route"]
    }
    assert weighted == {spec_.runtime_prefix: list(spec_.clusters) for spec_ in xds.route_specs()}
    by_prefix = {r["match"]["prefix"]: r["route"] for r in routes if "prefix" in r["match"]}
    assert by_prefix["/nimbus.api.v1.Invocations/"]["timeout"] == envoy.INVOKE_TIMEOUT
    (rest_invoke,) = [r for r in routes if "safe_regex" in r["match"]]
    assert rest_invoke["route"] == {"cluster": "invoker_http", "timeout": envoy.INVOKE_TIMEOUT}
    assert (
        rest_invoke["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"][
            "disabled"
        ]
        is True
    )
    assert by_prefix["/nimbus.api.v2."]["timeout"] == envoy.CONTROL_TIMEOUT
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    for name in xds.all_clusters():
        source = clusters[name]["eds_cluster_config"]["eds_config"]["path_config_source"]["path"]
        assert (
            source == f"{tmp_path}/{xds.eds_file(name)}"
            and clusters[name]["ignore_health_on_host_removal"]
        )
    (rtds,) = [layer for layer in config["layered_runtime"]["layers"] if "rtds_layer" in layer]
    assert rtds["rtds_layer"]["name"] == xds.RTDS_LAYER
    assert (
        rtds["rtds_layer"]["rtds_config"]["path_config_source"]["path"]
        == f"{tmp_path}/{xds.RTDS_FILE}"
    )
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_xds_directory_writes_only_changed_files_atomically(tmp_path):
    out = XdsDirectory(tmp_path / "xds")
    assert sorted(out.write({"a.json": b"1", "b.json": b"2"})) == ["a.json", "b.json"]
    assert out.write({"a.json": b"1", "b.json": b"3"}) == ["b.json"]
    assert (tmp_path / "xds" / "b.json").read_bytes() == b"3"
    assert not [p for p in (tmp_path / "xds").iterdir() if p.name.endswith(".tmp")]
