"""Deterministic zips of a source directory: the same files give the same bytes and sha256.

Entries are the regular files under the directory (symlinks followed), stored under their relative
POSIX paths in sorted order, each with the fixed timestamp 1980-01-01 00:00:00 and a mode of 0755 if
any execute bit is set (a `provided` runtime's `bootstrap` must stay executable) or 0644 otherwise.
`__pycache__`, `.git` and compiled `*.pyc` files are skipped. Funcmgr stores code by the sha256 of
these bytes, so an unchanged directory is recognised without uploading it again.
"""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

SKIP_DIRS = frozenset({"__pycache__", ".git"})
SKIP_SUFFIXES = (".pyc",)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def iter_source_files(root: Path) -> list[tuple[str, Path]]:
    """(archive name, file path) for every file to store, sorted by archive name."""
    found: list[tuple[str, Path]] = []
    # The real path of each directory's chain of ancestors, so a symlink back up (a cycle) ends.
    chains: dict[str, frozenset[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        chain = chains.pop(dirpath, frozenset()) | {real}
        kept = []
        for d in dirnames:
            if d in SKIP_DIRS or os.path.realpath(os.path.join(dirpath, d)) in chain:
                continue
            kept.append(d)
            chains[os.path.join(dirpath, d)] = chain
        dirnames[:] = kept
        base = Path(dirpath)
        for name in filenames:
            if name.endswith(SKIP_SUFFIXES):
                continue
            path = base / name
            if not path.is_file():  # broken symlinks, sockets, fifos
                continue
            found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def zip_directory(path: str | os.PathLike[str]) -> bytes:
    root = Path(path)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a directory")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for arcname, file_path in iter_source_files(root):
            mode = file_path.stat().st_mode
            perms = 0o755 if mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH) else 0o644
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr carries the mode
            info.external_attr = (stat.S_IFREG | perms) << 16
            zf.writestr(info, file_path.read_bytes(), compresslevel=6)
    return buf.getvalue()
