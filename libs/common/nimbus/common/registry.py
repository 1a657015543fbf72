"""Service discovery: every replica registers itself in etcd under a lease of its own.

A record (`ServiceEndpoint`) says which service the replica is, the address the gateway and peers
reach it on, the public API versions it serves and whether it is serving.
`nimbus.common.service.serve` registers every replica once it is SERVING and deregisters it first
thing on SIGTERM, so no service needs code of its own for it. A replica killed with `kill -9` leaves
the registry when its lease lapses (`NIMBUS_REGISTRY_TTL_S`, default 5 s).

The gateway's control plane (nimbus.gateway) watches these records and the rollout records below,
and turns them into Envoy's endpoints and route weights.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from nimbus.common import keys, mtls
from nimbus.common.clock import Clock, iso
from nimbus.common.config import ConfigError, get_float, get_hostport, get_int, get_str
from nimbus.common.etcd import Etcd

log = logging.getLogger(__name__)

# Every public API version this checkout knows, oldest first. A replica's *release* is the newest
# version it serves; the gateway has one upstream cluster per service and release.
API_RELEASES: tuple[str, ...] = ("v1", "v2")

SERVING = "SERVING"
DRAINING = "DRAINING"

_CALL_TIMEOUT_S = 3.0
_REVOKE_TIMEOUT_S = 2.0


def _load(cls: type[Any], raw: bytes | str | dict[str, Any]) -> Any:
    data = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
    # Unknown keys are ignored so an older reader survives a newer writer (add-only records).
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def release_of(api_versions: Sequence[str]) -> str:
    """The newest known API version in api_versions ("" when it serves none)."""
    known = [v for v in API_RELEASES if v in api_versions]
    return known[-1] if known else ""


@dataclass(frozen=True, slots=True)
class ServiceEndpoint:
    """One replica in the registry, under its lease: keys.service_endpoint(service, replica)."""

    service: str
    replica: str
    # host:port the gateway and peers connect to (an IP address: Envoy's EDS does not resolve names)
    address: str
    # The public API versions this replica serves, e.g. ["v1", "v2"]; empty for internal services.
    api_versions: tuple[str, ...] = ()
    state: str = SERVING
    started_at: str = ""
    pid: int = 0
    # host:port of its Prometheus endpoint (GET /metrics); "" when it serves none.
    metrics_address: str = ""
    # host:port of the replica's plain HTTP/1.1 listener, if it has one (the invokers' REST invokes
    # and HTTP triggers); the gateway routes to it like to `address`.
    http_address: str = ""

    @property
    def release(self) -> str:
        return release_of(self.api_versions)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["api_versions"] = list(self.api_versions)
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> ServiceEndpoint:
        data = json.loads(raw)
        data["api_versions"] = tuple(str(v) for v in data.get("api_versions") or ())
        record: ServiceEndpoint = _load(cls, data)
        return record


@dataclass(frozen=True, slots=True)
class Rollout:
    """Traffic of a service's older API versions shared between releases: `weight` (0..1) of the
    calls every release can serve goes to the replicas of release `version`, the rest to the others.
    Stored at keys.rollout(service); without one, calls spread by replica count."""

    service: str
    version: str
    weight: float
    updated_at: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Rollout:
        record: Rollout = _load(cls, raw)
        return record


def parse_api_versions(
    env: Mapping[str, str], default: Sequence[str] = API_RELEASES
) -> tuple[str, ...]:
    """NIMBUS_API_VERSIONS: the public API versions a replica serves, comma separated (default all
    of API_RELEASES). `v1` alone runs a replica as the previous release did."""
    raw = env.get("NIMBUS_API_VERSIONS", "").strip()
    if not raw:
        return tuple(default)
    versions = tuple(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
    unknown = [v for v in versions if v not in API_RELEASES]
    if unknown or not versions:
        raise ConfigError(
            f"NIMBUS_API_VERSIONS={raw!r} must list some of {', '.join(API_RELEASES)}"
        )
    return tuple(v for v in API_RELEASES if v in versions)


def advertise_address(listen_addr: str, override: str = "") -> str:
    """The address others reach a replica on: the override, else the listen address with a
    wildcard host (0.0.0.0, [::]) replaced by this host's IP address."""
    if override:
        return override
    host, _, port = listen_addr.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = socket.gethostbyname(socket.gethostname())
    return f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    """What serve() reads to register a replica (every variable is optional).

    NIMBUS_REGISTRY           1 registers the replica, 0 does not (default 1)
    NIMBUS_REGISTRY_TTL_S     lease TTL of the registration in seconds (default 5); a replica that
                              dies leaves the gateway's endpoints within it
    NIMBUS_ADVERTISE_ADDR     host:port others reach the replica on (default: NIMBUS_LISTEN_ADDR,
                              a wildcard host replaced by this host's IP address)
    NIMBUS_DEREGISTER_WAIT_S  on SIGTERM, how long a replica behind the gateway keeps serving
                              after it deregistered, so the gateway stops sending first (default 1)
    NIMBUS_ETCD_ENDPOINT, NIMBUS_REPLICA as in CommonConfig.
    """

    enabled: bool
    ttl_s: int
    advertise_addr: str
    deregister_wait_s: float
    etcd_host: str
    etcd_port: int
    replica: str

    @classmethod
    def from_env(cls, env: Mapping[str, str], service: str) -> RegistryConfig:
        enabled = env.get("NIMBUS_REGISTRY", "1").strip()
        if enabled not in ("0", "1"):
            raise ConfigError(f"NIMBUS_REGISTRY={enabled!r} must be 0 or 1")
        advertise = env.get("NIMBUS_ADVERTISE_ADDR", "").strip()
        if advertise:
            get_hostport(env, "NIMBUS_ADVERTISE_ADDR", advertise)
        host, port = get_hostport(env, "NIMBUS_ETCD_ENDPOINT", "127.0.0.1:2379")
        return cls(
            enabled=enabled == "1",
            ttl_s=get_int(env, "NIMBUS_REGISTRY_TTL_S", 5, minimum=2),
            advertise_addr=advertise,
            deregister_wait_s=get_float(env, "NIMBUS_DEREGISTER_WAIT_S", 1.0),
            etcd_host=host,
            etcd_port=port,
            replica=get_str(env, "NIMBUS_REPLICA", service),
        )


class Registration:
    """Keeps one replica's record in etcd under its own lease until deregister().

    run() waits until serving() is called, then registers and refreshes the lease every TTL/3 in
    its own task (a slow call never lets it lapse). A lost lease (etcd down longer than the TTL)
    is granted again and the record written again. deregister() revokes the lease, which deletes
    the record at once; after it, run() never writes again.
    """

    def __init__(self, etcd: Etcd, endpoint: ServiceEndpoint, ttl_s: int, clock: Clock) -> None:
        self._etcd = etcd
        self.endpoint = endpoint
        self._ttl_s = ttl_s
        self._clock = clock
        self._lease: int | None = None
        self._wanted = asyncio.Event()
        self._stopped = False
        self._healthy = True
        self.registered = asyncio.Event()
        # Serialises lease changes against deregister(), so no record lands after it.
        self._lock = asyncio.Lock()

    @property
    def key(self) -> bytes:
        return keys.service_endpoint(self.endpoint.service, self.endpoint.replica)

    def serving(self) -> None:
        """The replica is SERVING: register it (run() does, at once)."""
        self._wanted.set()

    async def run(self) -> None:
        await self._wanted.wait()
        interval = self._ttl_s / 3
        delay = 0.1
        while not self._stopped:
            try:
                await self._tick(min(_CALL_TIMEOUT_S, interval))
                self._set_healthy(True, None)
                delay = 0.1
                await self._clock.sleep(interval)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # never let the registration die; retry soon
                self._set_healthy(False, err)
                await self._clock.sleep(delay)
                delay = min(delay * 2, interval)

    async def _tick(self, timeout_s: float) -> None:
        async with self._lock:
            if self._stopped:
                return
            ttl = 0
            if self._lease is not None:
                async with asyncio.timeout(timeout_s):
                    ttl = await self._etcd.refresh_lease(self._lease)
            if ttl > 0:
                return
            if self._lease is not None:
                log.warning(
                    "registration lease lost, registering again",
                    extra={"fields": {"lease": self._lease}},
                )
            async with asyncio.timeout(timeout_s * 2):
                self._lease = await self._etcd.grant_lease(self._ttl_s)
                await self._etcd.put(self.key, self.endpoint.to_json(), lease=self._lease)
            if not self.registered.is_set():
                self.registered.set()
                log.info(
                    "registered",
                    extra={
                        "fields": {
                            "service": self.endpoint.service,
                            "address": self.endpoint.address,
                            "api_versions": list(self.endpoint.api_versions),
                        }
                    },
                )

    async def deregister(self) -> None:
        """Removes the record now (idempotent). Failures are logged: the lease then lapses."""
        self._stopped = True
        async with self._lock:
            lease, self._lease = self._lease, None
            if lease is None:
                return
            try:
                async with asyncio.timeout(_REVOKE_TIMEOUT_S):
                    await self._etcd.revoke_lease(lease)
                log.info("deregistered", extra={"fields": {"service": self.endpoint.service}})
            except Exception as err:
                log.warning(
                    "deregistration failed; the record lapses with its lease",
                    extra={"fields": {"error": str(err) or type(err).__name__}},
                )

    def _set_healthy(self, healthy: bool, err: Exception | None) -> None:
        if healthy != self._healthy:
            if healthy:
                log.info("registration keepalive recovered")
            else:
                log.warning(
                    "registration keepalive failing",
                    extra={"fields": {"error": str(err) or type(err).__name__}},
                )
        self._healthy = healthy


def new_registration(
    cfg: RegistryConfig,
    service: str,
    listen_addr: str,
    api_versions: Sequence[str],
    clock: Clock,
    now: float,
    metrics_addr: str = "",
    http_addr: str = "",
) -> tuple[Registration, Etcd]:
    """A Registration with an etcd client of its own (closed by the caller)."""
    etcd = Etcd(cfg.etcd_host, cfg.etcd_port, mtls.configure())
    address = advertise_address(listen_addr, cfg.advertise_addr)
    endpoint = ServiceEndpoint(
        service=service,
        replica=cfg.replica,
        address=address,
        api_versions=tuple(api_versions),
        state=SERVING,
        started_at=iso(now),
        pid=os.getpid(),
        metrics_address=advertise_address(metrics_addr) if metrics_addr else "",
        # Reached on the same host as the gRPC address, on the listener's own port.
        http_address=f"{address.rpartition(':')[0]}:{http_addr.rpartition(':')[2]}"
        if http_addr
        else "",
    )
    return Registration(etcd, endpoint, cfg.ttl_s, clock), etcd
