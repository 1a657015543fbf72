"""Renders deploy/local/envoy.yaml.tmpl into the cluster's envoy.yaml."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from pathlib import Path

from nimbus.cluster.layout import DEPLOY, REPO
from nimbus.cluster.spec import ClusterSpec

TEMPLATE = DEPLOY / "envoy.yaml.tmpl"
DESCRIPTOR = REPO / "libs" / "gen" / "nimbus.pb"
# The default of NIMBUS_MAX_ZIP_MB, the largest code package the services accept.
DEFAULT_MAX_ZIP_MB = 50


def max_body_bytes(max_zip_mb: int) -> int:
    """The gateway's body limit that matches the zip limit: base64 is 4/3 of the zip, and the JSON
    around it adds a little. A body over it is a 413 from Envoy before any service reads it."""
    return (max_zip_mb * 1024 * 1024 * 4 + 2) // 3 + 1024 * 1024
# Longest invoke (900 s) plus margin; a stream with no bytes for this long is reset.
STREAM_IDLE_TIMEOUT = "960s"


def endpoints(ports: list[int]) -> str:
    """An lb_endpoints list as YAML flow (JSON is YAML)."""
    return json.dumps(
        [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}} for p in ports]
    )


def render(spec: ClusterSpec, ports: Mapping[str, int], gateway_port: int, *,
           template: Path = TEMPLATE, descriptor: Path = DESCRIPTOR, max_zip_mb: int = DEFAULT_MAX_ZIP_MB) -> str:
    values: dict[str, object] = {
        "gateway_port": gateway_port,
        "admin_port": ports["envoy_admin"],
        "descriptor": str(descriptor),
        "max_body_bytes": max_body_bytes(max_zip_mb),
        "stream_idle_timeout": STREAM_IDLE_TIMEOUT,
        "local_reply_mappers": local_reply_mappers(),
    }
    bases = {p.base for p in spec.programs if p.service}
    for base in sorted(bases):
        values["endpoints_" + base.replace("-", "_")] = endpoints([ports[p.name] for p in spec.replicas(base)])
        # Per-replica extra ports ("{name}-http" in cluster.toml): ${endpoints_<base>_<suffix>}.
        replicas = spec.replicas(base)
        suffixes = [port[len(replicas[0].name) + 1:] for port in replicas[0].ports if port.startswith(replicas[0].name + "-")]
        for suffix in suffixes:
            key = f"endpoints_{base}_{suffix}".replace("-", "_")
            values[key] = endpoints([ports[f"{p.name}-{suffix}"] for p in replicas])
    return string.Template(template.read_text()).substitute(values)


# Envoy's local replies to REST callers, as {"code", "message", "details"} with the gRPC code that
# matches the HTTP status (as the services' errors do).
LOCAL_REPLY_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 408: 4, 413: 11, 429: 8, 431: 3, 500: 13,
                     502: 14, 503: 14, 504: 4}


def local_reply_mappers(codes: Mapping[int, int] = LOCAL_REPLY_CODES) -> str:
    not_grpc = {"header_filter": {"header": {
        "name": "x-nimbus-client-content-type", "string_match": {"prefix": "application/grpc"},
        "invert_match": True, "treat_missing_header_as_empty": True}}}
    mappers = []
    for status, code in codes.items():
        is_status = {"status_code_filter": {"comparison": {
            "op": "EQ", "value": {"default_value": status, "runtime_key": f"nimbus.local_reply.{status}"}}}}
        mappers.append({
            "filter": {"and_filter": {"filters": [is_status, not_grpc]}},
            "body_format_override": {
                "json_format": {"code": code, "message": "%LOCAL_REPLY_BODY%", "details": []},
                "content_type": "application/json",
            },
        })
    return json.dumps(mappers)
