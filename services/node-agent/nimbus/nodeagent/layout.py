"""Where a node keeps its files: HOME/nodes/<node_id>/{code,logs,run}. Paths only, no I/O but mkdir."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# sockaddr_un.sun_path is 108 bytes with the NUL; leave room for "<instance_id>.sock".
_MAX_SOCKET_DIR = 108 - 1 - len("/0123456789ab.sock")


@dataclass(frozen=True, slots=True)
class NodeLayout:
    root: Path
    socket_dir: Path

    @classmethod
    def for_node(cls, home: str, node_id: str) -> NodeLayout:
        root = Path(home) / "nodes" / node_id
        socket_dir = root / "run"
        if len(str(socket_dir).encode()) > _MAX_SOCKET_DIR:
            # A deep checkout cannot hold a Unix socket path; use a short per-node dir instead.
            digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
            socket_dir = Path(tempfile.gettempdir()) / f"nimbus-{digest}"
        return cls(root=root, socket_dir=socket_dir)

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def pycache_dir(self) -> Path:
        """Compiled bytecode of function code, shared by instances, kept out of the code dirs."""
        return self.root / "pycache"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    def socket_path(self, instance_id: str) -> Path:
        return self.socket_dir / f"{instance_id}.sock"

    def log_path(self, instance_id: str) -> Path:
        return self.logs_dir / f"{instance_id}.log"

    def pid_path(self, instance_id: str) -> Path:
        return self.run_dir / f"{instance_id}.pid"

    def make_dirs(self) -> None:
        for path in (self.code_dir, self.logs_dir, self.run_dir, self.socket_dir, self.pycache_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
