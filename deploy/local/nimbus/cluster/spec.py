"""cluster.toml -> the list of programs, with replicas expanded."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nimbus.cluster.layout import DEPLOY

DEFAULT_SPEC = DEPLOY / "cluster.toml"
HEALTH_KINDS = {"etcd", "nats", "redis", "envoy", "grpc"}


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class Program:
    name: str  # the supervisord program name, e.g. api-1
    base: str  # the [[process]] name, e.g. api
    replica: int  # 1-based; 1 for a process without replicas
    command: str
    priority: int
    health: str
    health_port: str
    ports: tuple[str, ...]
    service: bool
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterSpec:
    programs: list[Program]
    service_env: dict[str, str]
    pass_env_prefixes: tuple[str, ...]

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.programs]

    @property
    def port_names(self) -> list[str]:
        """Every named port, in a stable order (the gateway is not one of them)."""
        out: list[str] = []
        for p in self.programs:
            for port in p.ports:
                if port not in out:
                    out.append(port)
        return out

    def program(self, name: str) -> Program:
        for p in self.programs:
            if p.name == name:
                return p
        raise KeyError(f"no program {name!r} in the cluster (have: {', '.join(self.names)})")

    def replicas(self, base: str) -> list[Program]:
        return [p for p in self.programs if p.base == base]


def load(path: Path = DEFAULT_SPEC, env: Mapping[str, str] | None = None) -> ClusterSpec:
    with open(path, "rb") as f:
        return parse(tomllib.load(f), env or {})


def parse(data: dict[str, Any], env: Mapping[str, str] | None = None) -> ClusterSpec:
    cluster = data.get("cluster", {})
    programs: list[Program] = []
    for entry in data.get("process", []):
        programs.extend(_expand(entry, env or {}))
    names = [p.name for p in programs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise SpecError(f"duplicate program names: {sorted(dupes)}")
    spec = ClusterSpec(
        programs=sorted(programs, key=lambda p: (p.priority, names.index(p.name))),
        service_env={str(k): str(v) for k, v in data.get("service_env", {}).items()},
        pass_env_prefixes=tuple(cluster.get("pass_env_prefixes", ["NIMBUS_", "OTEL_"])),
    )
    known = set(spec.port_names)
    for p in spec.programs:
        if p.health_port not in known:
            raise SpecError(f"{p.name}: health_port {p.health_port!r} is not a declared port")
    return spec


def _replica_count(entry: dict[str, Any], base: str, env: Mapping[str, str]) -> int | None:
    """`replicas`, overridden by the variable `replicas_env` names when it is set."""
    replicas = entry.get("replicas")
    var = entry.get("replicas_env")
    if var and env.get(var, "").strip():
        raw = env[var].strip()
        if not raw.isdigit() or not 1 <= int(raw) <= 16:
            raise SpecError(f"{var}={raw!r} must be a whole number from 1 to 16 ({base} replicas)")
        return int(raw)
    return None if replicas is None else int(replicas)


def _expand(entry: dict[str, Any], env: Mapping[str, str]) -> list[Program]:
    try:
        base = str(entry["name"])
        command = str(entry["command"]).strip()
        health = str(entry["health"])
    except KeyError as err:
        raise SpecError(f"a [[process]] lacks {err.args[0]!r}: {entry}") from None
    if health not in HEALTH_KINDS:
        raise SpecError(f"{base}: health {health!r} is not one of {sorted(HEALTH_KINDS)}")
    service = bool(entry.get("service", False))
    replicas = _replica_count(entry, base, env)
    count = 1 if replicas is None else replicas
    if count < 1:
        raise SpecError(f"{base}: replicas must be >= 1")
    out = []
    for i in range(1, count + 1):
        name = base if replicas is None else f"{base}-{i}"
        # "{name}" in a port name makes one port per replica, e.g. "{name}-http" -> invoker-1-http.
        ports = tuple(str(port).replace("{name}", name) for port in entry.get("ports", []))
        if service:
            ports = (name, *ports)
        if not ports:
            raise SpecError(f"{name}: declares no port to check its health on")
        out.append(
            Program(
                name=name,
                base=base,
                replica=i,
                command=command,
                priority=int(entry.get("priority", 50)),
                health=health,
                health_port=str(entry.get("health_port", ports[0])),
                ports=ports,
                service=service,
                env={str(k): str(v) for k, v in entry.get("env", {}).items()},
            )
        )
    return out
