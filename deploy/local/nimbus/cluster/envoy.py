"""Renders deploy/local/envoy.yaml.tmpl into the cluster's envoy.yaml."""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nimbus.cluster import console
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
# Route timeouts: invokes get the longest timeout_s (900 s) plus queueing and margin; the control
# plane's calls (code uploads included) this long.
INVOKE_TIMEOUT = "960s"
CONTROL_TIMEOUT = "300s"


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """Envoy's rate limits: requests per second and burst per API key, and per client address
    (all a caller without a key has). From NIMBUS_GATEWAY_KEY_RPS / _KEY_BURST / _ANON_RPS /
    _ANON_BURST."""

    key_rps: int = 5000
    key_burst: int = 10000
    anon_rps: int = 20000
    anon_burst: int = 40000

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EdgeLimits:
        values = {}
        for field, var in (
            ("key_rps", "NIMBUS_GATEWAY_KEY_RPS"),
            ("key_burst", "NIMBUS_GATEWAY_KEY_BURST"),
            ("anon_rps", "NIMBUS_GATEWAY_ANON_RPS"),
            ("anon_burst", "NIMBUS_GATEWAY_ANON_BURST"),
        ):
            raw = env.get(var, "").strip()
            if raw:
                if not raw.isdigit() or int(raw) < 1:
                    raise ValueError(
                        f"{var}={raw!r} must be a whole number of requests, at least 1"
                    )
                values[field] = int(raw)
        limits = cls(**values)
        if limits.key_burst < limits.key_rps or limits.anon_burst < limits.anon_rps:
            raise ValueError("NIMBUS_GATEWAY_*_BURST must be at least the matching *_RPS")
        return limits


def endpoints(ports: list[int]) -> str:
    """An lb_endpoints list as YAML flow (JSON is YAML)."""
    return json.dumps(
        [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
            for p in ports
        ]
    )


ENVOY_REPLICA = "envoy"


def sds_file(pki_dir: Path) -> Path:
    return pki_dir / "envoy-sds.json"


def sds_document(pki_dir: Path) -> str:
    """Envoy's certificate as a file-based SDS secret: the split files of its replica directory,
    re-read whenever the launcher moves new ones in (watched_directory)."""
    d = pki_dir / "replicas" / ENVOY_REPLICA
    secret = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret",
        "name": "envoy_identity",
        "tls_certificate": {
            "certificate_chain": {"filename": str(d / "cert.pem")},
            "private_key": {"filename": str(d / "key.pem")},
            "watched_directory": {"path": str(d)},
        },
    }
    return json.dumps({"resources": [secret]}, indent=1)


def upstream_tls(pki_dir: Path | None, service: str, alpn: str = "h2") -> str:
    """A cluster's `transport_socket` (YAML flow) for mutual TLS to replicas of `service`:
    Envoy's own certificate comes by file-based SDS (re-read when rotated), and the upstream's
    certificate must name `service` (its SPIFFE URI SAN)."""
    if pki_dir is None:
        return ""
    socket = {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": "type.googleapis.com/"
            "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "common_tls_context": {
                "alpn_protocols": [alpn],
                "tls_certificate_sds_secret_configs": [
                    {
                        "name": "envoy_identity",
                        "sds_config": {
                            "resource_api_version": "V3",
                            "path_config_source": {"path": str(sds_file(pki_dir))},
                        },
                    }
                ],
                "validation_context": {
                    "trusted_ca": {"filename": str(pki_dir / "ca.crt")},
                    "match_typed_subject_alt_names": [
                        {
                            "san_type": "URI",
                            "matcher": {"prefix": f"spiffe://nimbus.internal/{service}/"},
                        }
                    ],
                },
            },
        },
    }
    return "transport_socket: " + json.dumps(socket)


def render(
    spec: ClusterSpec,
    ports: Mapping[str, int],
    gateway_port: int,
    *,
    template: Path = TEMPLATE,
    descriptor: Path = DESCRIPTOR,
    max_zip_mb: int = DEFAULT_MAX_ZIP_MB,
    xds_dir: Path = Path("/nonexistent/xds"),
    limits: EdgeLimits = EdgeLimits(),
    pki_dir: Path | None = None,
) -> str:
    values: dict[str, object] = {
        "gateway_port": gateway_port,
        "admin_port": ports["envoy_admin"],
        "descriptor": str(descriptor),
        "max_body_bytes": max_body_bytes(max_zip_mb),
        "stream_idle_timeout": STREAM_IDLE_TIMEOUT,
        "local_reply_mappers": local_reply_mappers(max_zip_mb=max_zip_mb),
        **common_values(xds_dir, limits, pki_dir=pki_dir),
    }
    bases = {p.base for p in spec.programs if p.service}
    for base in sorted(bases):
        values["endpoints_" + base.replace("-", "_")] = endpoints(
            [ports[p.name] for p in spec.replicas(base)]
        )
        # Per-replica extra ports ("{name}-http" in cluster.toml): ${endpoints_<base>_<suffix>}.
        replicas = spec.replicas(base)
        suffixes = [
            port[len(replicas[0].name) + 1 :]
            for port in replicas[0].ports
            if port.startswith(replicas[0].name + "-")
        ]
        for suffix in suffixes:
            key = f"endpoints_{base}_{suffix}".replace("-", "_")
            values[key] = endpoints([ports[f"{p.name}-{suffix}"] for p in replicas])
    return string.Template(template.read_text()).substitute(values)


def common_values(
    xds_dir: Path,
    limits: EdgeLimits,
    gateway_addr: str = "127.0.0.1",
    pki_dir: Path | None = None,
) -> dict[str, object]:
    """The template's values that do not depend on the process list (shared with deploy/compose).
    `pki_dir`: the cluster's PKI (nimbus.common.pki), whose replica "envoy" is Envoy's upstream
    certificate; None (a lone Envoy in tests) leaves its upstreams plaintext."""
    return {
        "gateway_addr": gateway_addr,
        "xds_dir": str(xds_dir),
        "upstream_tls_api": upstream_tls(pki_dir, "api"),
        "upstream_tls_invoker": upstream_tls(pki_dir, "invoker"),
        "upstream_tls_invoker_http": upstream_tls(pki_dir, "invoker", "http/1.1"),
        "invoke_timeout": INVOKE_TIMEOUT,
        "control_timeout": CONTROL_TIMEOUT,
        "key_rps": limits.key_rps,
        "key_burst": limits.key_burst,
        "anon_rps": limits.anon_rps,
        "anon_burst": limits.anon_burst,
        "console_routes": console.render_routes(),
        "console_max_body_bytes": console.MAX_BODY_BYTES,
    }


# Envoy's local replies to REST callers, as {"code", "status", "message", "details"} with the gRPC
# code that matches the HTTP status and its name (as the services' errors do).
_STATUS_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
LOCAL_REPLY_CODES = {
    400: 3,
    401: 16,
    403: 7,
    404: 5,
    408: 4,
    413: 11,
    429: 8,
    431: 3,
    500: 13,
    502: 14,
    503: 14,
    504: 4,
}


def too_large_message(max_zip_mb: int) -> str:
    """The message of the gateway's own 413: the limit, where it comes from, and the way round."""
    return (
        f"the request body is over the gateway's limit of {max_body_bytes(max_zip_mb)} bytes "
        f"(the base64 of a {max_zip_mb} MiB zip, NIMBUS_MAX_ZIP_MB, plus 1 MiB): code packages "
        f"may be up to {max_zip_mb} MiB zipped; send large ones with the streaming upload, gRPC "
        "nimbus.api.v1.Functions/UploadCode, raw bytes in chunks instead of base64 in one JSON "
        "body (`nimbus deploy` uses it for packages over 1 MiB)"
    )


def local_reply_mappers(
    codes: Mapping[int, int] = LOCAL_REPLY_CODES, max_zip_mb: int = DEFAULT_MAX_ZIP_MB
) -> str:
    not_grpc = {
        "header_filter": {
            "header": {
                "name": "x-nimbus-client-content-type",
                "string_match": {"prefix": "application/grpc"},
                "invert_match": True,
                "treat_missing_header_as_empty": True,
            }
        }
    }
    mappers = []
    for status, code in codes.items():
        is_status = {
            "status_code_filter": {
                "comparison": {
                    "op": "EQ",
                    "value": {
                        "default_value": status,
                        "runtime_key": f"nimbus.local_reply.{status}",
                    },
                }
            }
        }
        mappers.append(
            {
                "filter": {"and_filter": {"filters": [is_status, not_grpc]}},
                "body_format_override": {
                    "json_format": {
                        "code": code,
                        "status": _STATUS_NAMES[code],
                        # Envoy's own 413 says only "Payload Too Large": name the limit instead.
                        "message": too_large_message(max_zip_mb)
                        if status == 413
                        else "%LOCAL_REPLY_BODY%",
                        "details": [],
                    },
                    "content_type": "application/json",
                },
            }
        )
    return json.dumps(mappers)
