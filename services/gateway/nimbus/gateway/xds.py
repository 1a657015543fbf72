"""The registry as Envoy resources, rendered as file-based xDS. Pure: records in, JSON out.

Envoy's bootstrap (deploy/local/envoy.yaml.tmpl) declares one upstream cluster per routed service
and API release (api_v1, api_v2, invoker_v1, invoker_v2), plus invoker_http for the invokers'
HTTP/1.1 listeners (REST invoke and HTTP triggers), each of type EDS reading its endpoints from
`eds_<cluster>.json`, and one RTDS runtime layer read from `rtds.json` that holds the route weights:
every version's routes are `weighted_clusters` whose `runtime_key_prefix` is
`nimbus.routes.<service>.<version>`, so the weight of a cluster is the runtime key
`nimbus.routes.<service>.<version>.<cluster>`.

Each file is one DiscoveryResponse (`version_info` + `resources`), replaced atomically by a rename,
which is what Envoy's path_config_source watches for.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from nimbus.common.registry import API_RELEASES, SERVING, Rollout, ServiceEndpoint
from nimbus.gateway.weights import integer_weights, shares

# The services Envoy routes public API calls to.
ROUTED_SERVICES: tuple[str, ...] = ("api", "invoker")

EDS_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
RUNTIME_TYPE = "type.googleapis.com/envoy.service.runtime.v3.Runtime"
# The name of the RTDS layer in the bootstrap's layered_runtime.
RTDS_LAYER = "nimbus_routes"
RTDS_FILE = "rtds.json"


def cluster_name(service: str, release: str) -> str:
    return f"{service}_{release}"


def eds_file(cluster: str) -> str:
    return f"eds_{cluster}.json"


# The invokers' HTTP/1.1 listeners (REST invoke, HTTP triggers): one cluster of every serving
# replica that registered an http_address, whatever its release (v1's REST invoke is in all).
HTTP_CLUSTERS: dict[str, str] = {"invoker_http": "invoker"}


def all_clusters(services: Iterable[str] = ROUTED_SERVICES) -> list[str]:
    services = tuple(services)
    http = [c for c, s in HTTP_CLUSTERS.items() if s in services]
    return [cluster_name(s, r) for s in services for r in API_RELEASES] + http


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """The calls of one API version of one service, and the clusters (releases) that speak it."""

    service: str
    api_version: str
    clusters: tuple[str, ...]

    @property
    def runtime_prefix(self) -> str:
        return f"nimbus.routes.{self.service}.{self.api_version}"

    def runtime_key(self, cluster: str) -> str:
        return f"{self.runtime_prefix}.{cluster}"


def route_specs(services: Iterable[str] = ROUTED_SERVICES) -> list[RouteSpec]:
    specs = []
    for service in services:
        for i, version in enumerate(API_RELEASES):
            specs.append(
                RouteSpec(
                    service, version, tuple(cluster_name(service, r) for r in API_RELEASES[i:])
                )
            )
    return specs


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What Envoy should see: the endpoints of every cluster and every route weight."""

    endpoints: dict[str, tuple[ServiceEndpoint, ...]]
    weights: dict[str, int]


def build(
    records: Iterable[ServiceEndpoint],
    rollouts: Mapping[str, Rollout],
    services: Iterable[str] = ROUTED_SERVICES,
) -> Snapshot:
    services = tuple(services)
    by_cluster: dict[str, list[ServiceEndpoint]] = {c: [] for c in all_clusters(services)}
    for record in records:
        if record.service not in services or record.state != SERVING or not record.release:
            continue
        by_cluster[cluster_name(record.service, record.release)].append(record)
        for http_cluster, service in HTTP_CLUSTERS.items():
            if record.service == service and record.http_address:
                by_cluster[http_cluster].append(replace(record, address=record.http_address))
    endpoints = {
        c: tuple(sorted(eps, key=lambda e: (e.replica, e.address))) for c, eps in by_cluster.items()
    }
    counts = {c: len(eps) for c, eps in endpoints.items() if c not in HTTP_CLUSTERS}
    release_of = {cluster_name(s, r): r for s in services for r in API_RELEASES}
    weights: dict[str, int] = {}
    for spec in route_specs(services):
        fractions = shares(spec.clusters, counts, rollouts.get(spec.service), release_of)
        for cluster, weight in integer_weights(fractions).items():
            weights[spec.runtime_key(cluster)] = weight
    return Snapshot(endpoints, weights)


def lb_endpoint(record: ServiceEndpoint) -> dict[str, object]:
    host, _, port = record.address.rpartition(":")
    return {
        "endpoint": {
            "address": {"socket_address": {"address": host.strip("[]"), "port_value": int(port)}},
            "hostname": record.replica,
        },
    }


def eds_resource(cluster: str, records: Iterable[ServiceEndpoint]) -> dict[str, object]:
    lb_endpoints = [lb_endpoint(r) for r in records]
    return {
        "@type": EDS_TYPE,
        "cluster_name": cluster,
        "endpoints": [{"lb_endpoints": lb_endpoints}] if lb_endpoints else [],
    }


def rtds_resource(weights: Mapping[str, int]) -> dict[str, object]:
    return {"@type": RUNTIME_TYPE, "name": RTDS_LAYER, "layer": dict(sorted(weights.items()))}


def discovery_response(resource: Mapping[str, object]) -> bytes:
    """One resource as a DiscoveryResponse; version_info is the hash of the resource."""
    body = json.dumps(resource, sort_keys=True)
    version = hashlib.sha256(body.encode()).hexdigest()[:16]
    return (
        json.dumps({"version_info": version, "resources": [resource]}, sort_keys=True, indent=1)
        + "\n"
    ).encode()


def files(snapshot: Snapshot) -> dict[str, bytes]:
    """Every xDS file by name."""
    out = {
        eds_file(c): discovery_response(eds_resource(c, eps))
        for c, eps in snapshot.endpoints.items()
    }
    out[RTDS_FILE] = discovery_response(rtds_resource(snapshot.weights))
    return out


def seed_files(services: Iterable[str] = ROUTED_SERVICES) -> dict[str, bytes]:
    """The files before any replica registered: no endpoints (Envoy needs the files to exist)."""
    return files(build([], {}, services))
