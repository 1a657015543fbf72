"""Loopback ports: pick free ones, save them in ports.json, reuse them while they stay free.

Ports are drawn below the kernel's ephemeral range, so an outgoing connection's source port
cannot take a saved port between two starts.
"""

from __future__ import annotations

import json
import random
import socket
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

HOST = "127.0.0.1"


def is_free(port: int, host: str = HOST) -> bool:
    """True when a listener could bind host:port now (SO_REUSEADDR, like the servers use)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _candidate_range() -> tuple[int, int]:
    """10000 up to just below the ephemeral range (or 32767);
    any unprivileged port on odd kernels."""
    low, _ = _ephemeral_range()
    if low > 11000:
        return 10000, min(low - 1, 32767)
    return 1025, 65535


def free_port(
    exclude: Iterable[int] = (),
    *,
    check: Callable[[int], bool] = is_free,
    rng: random.Random | None = None,
) -> int:
    """A loopback port that is free now and not in exclude."""
    rng = rng or random.Random()
    taken = set(exclude)
    low, high = _candidate_range()
    for _ in range(1000):
        port = rng.randint(low, high)
        if port not in taken and check(port):
            return port
    raise RuntimeError(f"no free loopback port found in {low}-{high}")


def allocate(
    names: Iterable[str],
    saved: Mapping[str, int],
    reserved: Iterable[int] = (),
    *,
    check: Callable[[int], bool] = is_free,
    rng: random.Random | None = None,
) -> dict[str, int]:
    """One distinct port per name: the saved one when still free, else a new free one.

    reserved ports (the gateway) are never handed out.
    """
    used = set(reserved)
    result: dict[str, int] = {}
    pending: list[str] = []
    for name in names:
        port = saved.get(name)
        if isinstance(port, int) and port not in used and check(port):
            result[name] = port
            used.add(port)
        else:
            pending.append(name)
    for name in pending:
        port = free_port(used, check=check, rng=rng)
        result[name] = port
        used.add(port)
    return result


def load(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, int)}


def save(path: Path, ports: Mapping[str, int]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(ports), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
