"""Function code on this node: fetched once by sha256, verified, unpacked read-only, then reused.

HOME/nodes/<node_id>/code/<sha256>/ appears atomically (unpacked into a temp dir, then renamed), so
a directory that exists is always complete, across crashes and restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import shutil
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Protocol

from nimbus.common.errors import InvalidArgument, Unavailable
from nimbus.common.logs import kv

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Lambda allows 250 MB unzipped; a little headroom, and a cap on entries against zip bombs.
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024
MAX_ENTRIES = 50_000


class CodeSource(Protocol):
    def fetch(self, sha256: str) -> AsyncIterator[bytes]:
        """The package's bytes in chunks; raises NotFound or Unavailable."""
        ...


class BadPackage(InvalidArgument):
    """The zip cannot be unpacked safely: the function's code is at fault, not the platform."""


class CodeCache:
    def __init__(self, root: Path, source: CodeSource, *, fetch_timeout_s: float = 120.0) -> None:
        self._root = root
        self._source = source
        self._fetch_timeout_s = fetch_timeout_s
        # One download per package even when several instances of it start at once.
        self._locks: dict[str, asyncio.Lock] = {}

    async def ensure(self, sha256: str) -> Path:
        """The unpacked code directory for a package, fetching it when missing."""
        if not _SHA256.match(sha256):
            raise InvalidArgument(f"code_sha256 {sha256!r} is not a lowercase hex sha256")
        final = self._root / sha256
        if final.is_dir():
            return final
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        try:
            async with lock:
                if final.is_dir():
                    return final
                await self._fetch_and_unpack(sha256, final)
                return final
        finally:
            if not lock.locked():
                self._locks.pop(sha256, None)

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
                raise Unavailable(f"code package {sha256} arrived corrupted (sha256 {digest.hexdigest()})")
            await asyncio.to_thread(_unpack, zip_path, tmp_dir, final)
            log.info("code package cached", extra=kv(code_sha256=sha256, size=size))
        except TimeoutError:
            raise Unavailable(
                f"fetching code package {sha256} took longer than {self._fetch_timeout_s:.0f} s"
            ) from None
        finally:
            zip_path.unlink(missing_ok=True)
            if tmp_dir.exists():
                await asyncio.to_thread(shutil.rmtree, tmp_dir, True)


def _unpack(zip_path: Path, tmp_dir: Path, final: Path) -> None:
    extract_zip(zip_path, tmp_dir)
    try:
        os.rename(tmp_dir, final)
    except OSError:
        # Another agent process on the same HOME won the race: its copy is identical by sha256.
        if not final.is_dir():
            raise


def extract_zip(
    zip_path: Path, dest: Path, *, max_bytes: int = MAX_UNZIPPED_BYTES, max_entries: int = MAX_ENTRIES
) -> None:
    """Unpacks a zip refusing absolute paths, '..', symlinks and oversized contents."""
    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as err:
        raise BadPackage(f"code package is not a zip file: {err}") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > max_entries:
            raise BadPackage(f"code package has {len(entries)} entries, more than {max_entries}")
        if sum(e.file_size for e in entries) > max_bytes:
            raise BadPackage(f"code package unpacks to more than {max_bytes // (1024 * 1024)} MB")
        dest.mkdir(parents=True)
        written = 0
        for entry in entries:
            parts = _safe_parts(entry.filename)
            if not parts:
                continue
            target = dest.joinpath(*parts)
            mode = entry.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BadPackage(f"code package entry {entry.filename!r} is a symlink")
            if entry.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(entry) as src, open(target, "wb") as out:
                # Count real bytes: a forged header must not let a bomb through.
                while chunk := src.read(1024 * 1024):
                    written += len(chunk)
                    if written > max_bytes:
                        raise BadPackage(f"code package unpacks to more than {max_bytes // (1024 * 1024)} MB")
                    out.write(chunk)
            # Keep the executable bit (binaries in a package); the code is read-only for instances.
            os.chmod(target, 0o555 if mode & 0o111 else 0o444)


def _safe_parts(name: str) -> tuple[str, ...]:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or any(part == ".." for part in path.parts):
        raise BadPackage(f"code package entry {name!r} escapes the code directory")
    return tuple(part for part in path.parts if part not in ("", "."))
