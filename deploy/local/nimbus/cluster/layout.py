"""Where a cluster keeps its state: every path under NIMBUS_HOME, in one place."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# deploy/local/nimbus/cluster/layout.py -> the checkout's root
REPO = Path(__file__).resolve().parents[4]
DEPLOY = REPO / "deploy" / "local"

# A unix socket path must fit in sockaddr_un (108 bytes with the NUL).
_MAX_SOCKET_PATH = 100


def default_home(env: Mapping[str, str] = os.environ) -> Path:
    raw = env.get("NIMBUS_HOME", "").strip()
    return Path(raw).expanduser().resolve() if raw else REPO / ".nimbus"


@dataclass(frozen=True)
class Layout:
    home: Path

    @classmethod
    def at(cls, home: Path | str) -> Layout:
        return cls(Path(home).expanduser().resolve())

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def data_dirs(self) -> list[Path]:
        return [self.home / d for d in ("etcd", "jetstream", "redis", "code")]

    @property
    def pki(self) -> Path:
        """The cluster CA and every replica's certificate (nimbus.common.pki), mode 0700."""
        return self.home / "pki"

    @property
    def redis_socket(self) -> Path:
        """Redis's only listener, in a directory of mode 0700."""
        return self.run / "redis" / "redis.sock"

    @property
    def nats_conf(self) -> Path:
        return self.run / "nats.conf"

    @property
    def ports_file(self) -> Path:
        return self.home / "ports.json"

    @property
    def credentials(self) -> Path:
        return self.home / "credentials.json"

    @property
    def supervisord_conf(self) -> Path:
        return self.run / "supervisord.conf"

    @property
    def supervisord_pid(self) -> Path:
        return self.run / "supervisord.pid"

    @property
    def supervisord_out(self) -> Path:
        """supervisord's own stdout/stderr: config errors before its log file is open."""
        return self.run / "supervisord.out"

    @property
    def launcher_pid(self) -> Path:
        return self.run / "launcher.pid"

    @property
    def envoy_yaml(self) -> Path:
        return self.run / "envoy.yaml"

    @property
    def xds_dir(self) -> Path:
        """Envoy's file-based xDS, written by the gateway program (nimbus.gateway)."""
        return self.run / "xds"

    @property
    def socket(self) -> Path:
        path = self.run / "supervisor.sock"
        if len(str(path)) <= _MAX_SOCKET_PATH:
            return path
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:16]
        return Path("/tmp") / f"nimbus-{digest}.sock"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def ensure(self) -> None:
        for d in (self.home, self.run, self.logs, *self.data_dirs):
            d.mkdir(parents=True, exist_ok=True)
