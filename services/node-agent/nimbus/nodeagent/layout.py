"""Where a node keeps its files, under HOME/nodes/<node_id>/. Paths only, no I/O but mkdir.

code/<sha256>/          unpacked code packages (codecache.py)
logs/<id>.jsonl         each instance's captured output, one JSON object per line, until shipped
logs/cursors.json       how far each file has been shipped to the log streams (logship.py)
run/<id>.pid            the host pid of each sandbox's first process
sockets/<id>/sock       the agent's listening socket for one sandbox (bind-mounted into it)
sandbox/                the runc driver's: rootfs/ skeleton, etc/, runtime/ (shim copies),
                        tasks/<id>/ (where code is mounted for each sandbox), code-ro/,
                        bundles/<id>/config.json, runc/ (runc's --root)

A sandbox's socket path must fit sockaddr_un's 108 bytes. When sockets/ under a deep HOME does
not, they go to HOME/run/<hash of the node dir> if that fits, else to <tmp>/nimbus-<hash>. Each
is a directory only this agent's user may enter: created 0700, or, when it exists, used only if
it is a real directory (no symlink) owned by this user. A name in a world-writable /tmp is
predictable, so another user may have made it first to watch or replace the sockets (or to make
the agent chown through a symlink): then the agent uses a fresh mkdtemp directory instead.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nimbus.common.logs import kv

log = logging.getLogger(__name__)

# sockaddr_un.sun_path is 108 bytes with the NUL; leave room for "/<sandbox_id>/sock".
_MAX_SOCKET_DIR = 108 - 1 - len("/0123456789ab/sock")


@dataclass(frozen=True, slots=True)
class NodeLayout:
    root: Path
    socket_root: Path

    @classmethod
    def for_node(cls, home: str, node_id: str) -> NodeLayout:
        root = Path(home) / "nodes" / node_id
        digest = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        # A deep checkout cannot hold a Unix socket path; use a shorter per-node dir instead.
        for socket_root in (
            root / "sockets",
            Path(home) / "run" / digest,
            Path(tempfile.gettempdir()) / f"nimbus-{digest}",
        ):
            if len(str(socket_root).encode()) <= _MAX_SOCKET_DIR:
                break
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

    def make_dirs(self) -> NodeLayout:
        """Creates the node's directories; the layout to use from now on (its socket_root is
        another, private one when the planned one is someone else's)."""
        for path in (self.code_dir, self.logs_dir, self.run_dir, self.sandbox_dir):
            os.makedirs(path, mode=0o700, exist_ok=True)
        os.makedirs(self.socket_root.parent, mode=0o755, exist_ok=True)
        if private_dir(self.socket_root):
            return self
        fresh = Path(tempfile.mkdtemp(prefix=f"{self.socket_root.name}-"))
        log.warning(
            "the socket directory exists and is not this agent's own; using a fresh one",
            extra=kv(refused=str(self.socket_root), using=str(fresh)),
        )
        return dataclasses.replace(self, socket_root=fresh)


def private_dir(path: Path) -> bool:
    """Creates `path` mode 0700, or accepts it if it already is a real directory of this user (then
    made 0700); False when it is anything else (another user's, a symlink, a file)."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return False
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(path, 0o700)
    return True
