"""Function code on this node: fetched once by sha256, verified, unpacked read-only, then reused.

HOME/nodes/<node_id>/code/<sha256>/ appears atomically (unpacked into a temp dir, then renamed), so
a directory that exists is always complete, across crashes and restarts. Every instance of a
package shares the one directory (sandboxes see it read-only). Python sources are compiled once
here, with the sandbox's interpreter, so no instance pays for it at import time: by the sandbox
driver, inside a sandbox with its own limits, since the package is a tenant's (a pathological
file can take the compiler gigabytes).

The cache stays under a disk budget (NIMBUS_CODE_CACHE_MB): after each new package, the least
recently used packages that no instance holds (acquire/release count holders) are deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from nimbus.common.errors import InvalidArgument, Unavailable
from nimbus.common.logs import kv
from nimbus.nodeagent.codefiles import (
    SHA256,
    BadPackage,
    extract_zip,
    make_readable,
    publish,
    remove_tree,
    scan,
    tree_size,
)
from nimbus.nodeagent.policy import CachedCode, evict_victims

__all__ = ["BadPackage", "CodeCache", "CodeSource", "extract_zip"]

log = logging.getLogger(__name__)


class CodeSource(Protocol):
    def fetch(self, sha256: str) -> AsyncIterator[bytes]:
        """The package's bytes in chunks; raises NotFound or Unavailable."""
        ...


class PythonCompiler(Protocol):
    async def compile_python(self, tree: Path) -> None:
        """Adds the .pyc files of the tree's Python sources, best effort and bounded."""
        ...


@dataclass(slots=True)
class _Entry:
    size: int
    last_used: int
    holders: int = 0


class CodeCache:
    def __init__(
        self,
        root: Path,
        source: CodeSource,
        *,
        budget_mb: int = 4096,
        compiler: PythonCompiler | None = None,
        fetch_timeout_s: float = 120.0,
    ) -> None:
        self._root = root
        self._source = source
        self._budget = budget_mb * 1024 * 1024
        self._compiler = compiler
        self._fetch_timeout_s = fetch_timeout_s
        # One download per package even when several instances of it start at once.
        self._locks: dict[str, asyncio.Lock] = {}
        self._entries: dict[str, _Entry] = {}
        self._tick = 0
        self._loaded = False
        self._index_lock = asyncio.Lock()

    async def acquire(self, sha256: str) -> Path:
        """The unpacked code directory, fetched when missing;
        held (never evicted) until release()."""
        return await self.ensure(sha256, hold=True)

    def release(self, sha256: str) -> None:
        entry = self._entries.get(sha256)
        if entry is not None and entry.holders > 0:
            entry.holders -= 1
            entry.last_used = self._next_tick()

    def usage(self) -> dict[str, CachedCode]:
        return {sha: CachedCode(e.size, e.last_used, e.holders) for sha, e in self._entries.items()}

    async def ensure(self, sha256: str, *, hold: bool = False) -> Path:
        """The unpacked code directory for a package, fetching it when missing."""
        if not SHA256.match(sha256):
            raise InvalidArgument(f"code_sha256 {sha256!r} is not a lowercase hex sha256")
        await self.load_index()
        final = self._root / sha256
        entry = self._entries.get(sha256)
        if entry is not None and final.is_dir():
            entry.last_used = self._next_tick()
            entry.holders += hold
            return final
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        try:
            async with lock:
                if not final.is_dir():
                    await self._fetch_and_unpack(sha256, final)
                entry = self._entries.get(sha256)
                if entry is None:
                    entry = self._entries[sha256] = _Entry(
                        await asyncio.to_thread(tree_size, final), 0
                    )
                entry.last_used = self._next_tick()
                # Held before evicting, so a package larger than the budget is not evicted under us.
                entry.holders += hold
                await self._evict()
                return final
        finally:
            if not lock.locked():
                self._locks.pop(sha256, None)

    def _next_tick(self) -> int:
        self._tick += 1
        return self._tick

    async def load_index(self) -> None:
        """Once, before anything else uses the cache; every caller waits for it (the scan deletes
        temp files, which must not be ones an ensure() is writing)."""
        if self._loaded:
            return
        async with self._index_lock:
            if not self._loaded:
                await self._scan_disk()

    async def _scan_disk(self) -> None:
        """What a previous run left: complete packages (oldest first), and temp files to delete."""
        found = await asyncio.to_thread(scan, self._root)
        for sha, size in found:
            self._entries.setdefault(sha, _Entry(size, self._next_tick()))
        self._loaded = True

    async def _evict(self) -> None:
        victims = evict_victims(self.usage(), self._budget)
        for sha in victims:
            self._entries.pop(sha, None)
            trash = self._root / f".trash-{sha[:12]}-{secrets.token_hex(4)}"
            with contextlib.suppress(OSError):
                os.rename(self._root / sha, trash)
                await asyncio.to_thread(remove_tree, trash)
        if victims:
            log.info("evicted code packages", extra=kv(code_sha256=victims))

    async def _fetch_and_unpack(self, sha256: str, final: Path) -> None:
        tag = secrets.token_hex(4)
        zip_path = self._root / f".tmp-{sha256[:12]}-{tag}.zip"
        tmp_dir = self._root / f".tmp-{sha256[:12]}-{tag}"
        try:
            digest = hashlib.sha256()
            size = 0
            out = await asyncio.to_thread(open, zip_path, "wb")
            try:
                async with asyncio.timeout(self._fetch_timeout_s):
                    async for chunk in self._source.fetch(sha256):
                        digest.update(chunk)
                        size += len(chunk)
                        await asyncio.to_thread(out.write, chunk)
            finally:
                await asyncio.to_thread(out.close)
            if digest.hexdigest() != sha256:
                raise Unavailable(
                    f"code package {sha256} arrived corrupted (sha256 {digest.hexdigest()})"
                )
            has_python = await asyncio.to_thread(extract_zip, zip_path, tmp_dir)
            if has_python and self._compiler is not None:
                await self._compiler.compile_python(tmp_dir)
                await asyncio.to_thread(make_readable, tmp_dir)
            await asyncio.to_thread(publish, tmp_dir, final)
            log.info("code package cached", extra=kv(code_sha256=sha256, size=size))
        except TimeoutError:
            raise Unavailable(
                f"fetching code package {sha256} took longer than {self._fetch_timeout_s:.0f} s"
            ) from None
        finally:
            zip_path.unlink(missing_ok=True)
            if tmp_dir.exists():
                await asyncio.to_thread(remove_tree, tmp_dir)
