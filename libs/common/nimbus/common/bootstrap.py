"""First-start setup shared by the launcher and the tests: the admin key and credentials file."""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path

from nimbus.common import auth, keys
from nimbus.common.clock import iso
from nimbus.common.etcd import Etcd


async def ensure_admin_credentials(etcd: Etcd, home: Path, endpoint: str) -> Path:
    """Creates an admin key in the `default` namespace once and writes credentials.json (0600).

    An existing file is kept, with its endpoint updated, as long as its key is still in etcd.
    """
    path = home / "credentials.json"
    if path.exists():
        data = json.loads(path.read_text())
        key = data.get("api_key", "")
        if key and await etcd.get(keys.api_key(auth.hash_key(key))) is not None:
            if data.get("endpoint") != endpoint:
                _write(path, {"endpoint": endpoint, "api_key": key})
            return path
    key = auth.new_key()
    record = auth.KeyRecord(
        key_id=secrets.token_hex(6),
        namespace="default",
        admin=True,
        description="admin key created by the first make up",
        created_at=iso(time.time()),
    )
    await auth.store_key(etcd, key, record)
    _write(path, {"endpoint": endpoint, "api_key": key})
    return path


def _write(path: Path, data: dict[str, str]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
