"""Where a node keeps its files, under HOME/nodes/<node_id>/. Paths only, no I/O but mkdir.

code/<sha256>/          unpacked code packages (codecache.py)
logs/<id>.jsonl         each instance's captured output, one JSON object per line, until shipped
logs/cursors.json       how far each file has been shipped to the log streams (logship.py)
run/<id>.pid            the host pid of each sandbox's first process
sockets/<id>/sock       the agent's listening socket for one sandbox (bind-mounted into it)
sandbox/                the runc driver's: rootfs/ skeleton, etc/, runtime/ (shim copies),
                        tasks/<id>/ (where code is mounted for each sandbox), code-ro/,
                        bundles/<id>/config.json, runc/ (runc's --root)
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

# sockaddr_un.sun_path is 108 bytes with the NUL; leave room for "/<sandbox_id>/sock".
_MAX_SOCKET_DIR = 108 - 1 - len("/0123456789ab/sock")


@dataclass(frozen=True, slots=True)
class NodeLayout:
    root: Path
    socket_root: Path

    @classmethod
    def for_node(cls, home: str, node_id: str) -> NodeLayout:
        root = Path(home) / "nodes" / node_id
        socket_root = root / "sockets"
        if len(str(socket_root).encode()) > _MAX_SOCKET_DIR:
            # A deep checkout cannot hold a Unix socket path; use a short per-node dir instead.
            digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
            socket_root = Path(tempfile.gettempdir()) / f"nimbus-{digest}"
        return cls(root=root, socket_root=socket_root)

    @property
    def code_dir(self) -> Path:
        return self.root / "code"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def sandbox_dir(self) -> Path:
        return self.root / "sandbox"

    def socket_dir(self, sandbox_id: str) -> Path:
        return self.socket_root / sandbox_id

    def log_path(self, instance_id: str) -> Path:
        return self.logs_dir / f"{instance_id}.jsonl"

    def pid_path(self, instance_id: str) -> Path:
        return self.run_dir / f"{instance_id}.pid"

    def make_dirs(self) -> None:
        for path in (
            self.code_dir,
            self.logs_dir,
            self.run_dir,
            self.socket_root,
            self.sandbox_dir,
        ):
            os.makedirs(path, mode=0o700, exist_ok=True)
