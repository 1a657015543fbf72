"""Helpers for the typed per-service configs: every value comes from a Mapping passed in."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class ConfigError(ValueError):
    """A bad environment variable; the message names the variable and the value."""


# sysexits.h's EX_CONFIG: a service that exits with it cannot start as configured (systemd's
# RestartPreventExitStatus= and similar can stop restarting it). It first prints one line starting
# with CONFIG_ERROR_PREFIX, which the local cluster looks for in the program's log.
EXIT_CONFIG = 78
CONFIG_ERROR_PREFIX = "configuration error: "


def get_str(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip()
    if not value:
        raise ConfigError(f"{name} must not be empty")
    return value


def get_int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


def get_float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be >= {minimum}")
    return value


def get_hostport(env: Mapping[str, str], name: str, default: str) -> tuple[str, int]:
    raw = get_str(env, name, default)
    host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{name}={raw!r} must be host:port")
    return host, int(port)


def get_optional_hostport(env: Mapping[str, str], name: str) -> str:
    """host:port, or "" when the variable is unset or empty."""
    raw = env.get(name, "").strip()
    if raw:
        get_hostport(env, name, raw)
    return raw


@dataclass(frozen=True, slots=True)
class CommonConfig:
    """What every service reads.

    NIMBUS_HOME            state directory (default .nimbus)
    NIMBUS_REPLICA         this process's name in logs, e.g. invoker-1 (default: the service name)
    NIMBUS_ETCD_ENDPOINT   etcd client address host:port (default 127.0.0.1:2379)
    NIMBUS_LOG_LEVEL       DEBUG | INFO | WARNING | ERROR (default INFO)
    NIMBUS_DRAIN_S         how long SIGTERM waits for in-flight calls (default 10)
    NIMBUS_METRICS_ADDR    host:port of the Prometheus scrape endpoint (default: none, no endpoint)
    NIMBUS_EVENT_LOOP      uvloop | asyncio (default uvloop): the process's event loop, chosen by
                           nimbus.common.service.run before main (nimbus.common.eventloop), so
                           not a field here
    """

    home: str
    replica: str
    etcd_host: str
    etcd_port: int
    log_level: str
    drain_s: float
    metrics_addr: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], service: str) -> CommonConfig:
        host, port = get_hostport(env, "NIMBUS_ETCD_ENDPOINT", "127.0.0.1:2379")
        level = get_str(env, "NIMBUS_LOG_LEVEL", "INFO").upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ConfigError(f"NIMBUS_LOG_LEVEL={level!r} must be DEBUG, INFO, WARNING or ERROR")
        return cls(
            home=os.path.abspath(get_str(env, "NIMBUS_HOME", ".nimbus")),
            replica=get_str(env, "NIMBUS_REPLICA", service),
            etcd_host=host,
            etcd_port=port,
            log_level=level,
            drain_s=get_float(env, "NIMBUS_DRAIN_S", 10.0),
            metrics_addr=get_optional_hostport(env, "NIMBUS_METRICS_ADDR"),
        )
