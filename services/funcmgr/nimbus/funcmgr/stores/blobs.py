"""Content-addressed code blobs on local disk: <dir>/<sha256>.zip, written atomically."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator

CHUNK_BYTES = 1024 * 1024


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class BlobStore:
    def __init__(self, directory: str) -> None:
        self._dir = directory
        os.makedirs(directory, exist_ok=True)

    def path(self, sha256: str) -> str:
        return os.path.join(self._dir, f"{sha256}.zip")

    async def put(self, data: bytes) -> str:
        return await asyncio.to_thread(self._put, data)

    def _put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        final = self.path(sha)
        if os.path.exists(final):
            # A fresh mtime keeps the blob out of the collector's reach until its record lands.
            os.utime(final)
            return sha
        tmp = f"{final}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        return sha

    def list_blobs(self) -> dict[str, float]:
        """sha256 → mtime of every stored blob."""
        found = {}
        for entry in os.scandir(self._dir):
            if entry.name.endswith(".zip") and len(entry.name) == 68:
                found[entry.name[:-4]] = entry.stat().st_mtime
        return found

    def delete(self, sha256: str) -> None:
        try:
            os.unlink(self.path(sha256))
        except FileNotFoundError:
            pass

    async def get(self, sha256: str) -> bytes | None:
        """The whole blob, or None when there is none."""
        try:
            return await asyncio.to_thread(_read, self.path(sha256))
        except FileNotFoundError:
            return None

    def exists(self, sha256: str) -> bool:
        return os.path.exists(self.path(sha256))

    async def read_chunks(self, sha256: str) -> AsyncIterator[tuple[bytes, int]]:
        """(chunk, total size) pairs; raises FileNotFoundError for an unknown blob."""
        path = self.path(sha256)
        size = os.path.getsize(path)
        f = await asyncio.to_thread(open, path, "rb")
        try:
            while True:
                chunk = await asyncio.to_thread(f.read, CHUNK_BYTES)
                if not chunk:
                    return
                yield chunk, size
        finally:
            f.close()
