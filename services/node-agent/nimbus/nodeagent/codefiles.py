"""The file work of the code cache: safe unzipping, sizes, removal. Blocking; run in a thread."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from nimbus.common.errors import InvalidArgument

SHA256 = re.compile(r"^[0-9a-f]{64}$")
# Lambda allows 250 MB unzipped; a little headroom, and a cap on entries against zip bombs.
MAX_UNZIPPED_BYTES = 512 * 1024 * 1024
MAX_ENTRIES = 50_000


class BadPackage(InvalidArgument):
    """The zip cannot be unpacked safely: the function's code is at fault, not the platform."""


def publish(tmp_dir: Path, final: Path) -> None:
    try:
        os.rename(tmp_dir, final)
    except OSError:
        # Another agent process on the same HOME won the race: its copy is identical by sha256.
        if not final.is_dir():
            raise


def scan(root: Path) -> list[tuple[str, int]]:
    found: list[tuple[float, str, int]] = []
    for child in root.iterdir():
        if child.name.startswith((".tmp-", ".trash-")):
            remove_tree(child)
        elif SHA256.match(child.name) and child.is_dir():
            found.append((child.stat().st_mtime, child.name, tree_size(child)))
    return [(sha, size) for _, sha, size in sorted(found)]


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        # The tree is read-only by design; make it deletable first.
        _make_writable(path)
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _make_writable(path: Path) -> None:
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(dirpath, d), 0o755)
    with contextlib.suppress(OSError):
        os.chmod(path, 0o755)


def make_readable(tree: Path) -> None:
    """compileall's __pycache__ dirs and .pyc files follow the umask;
    every instance must read them."""
    for dirpath, dirnames, filenames in os.walk(tree):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            if f.endswith(".pyc"):
                os.chmod(p, 0o444)


def extract_zip(
    zip_path: Path,
    dest: Path,
    *,
    max_bytes: int = MAX_UNZIPPED_BYTES,
    max_entries: int = MAX_ENTRIES,
) -> bool:
    """Unpacks a zip refusing absolute paths, '..', symlinks and oversized contents; whether it
    holds Python sources. Directories are 0755 and files 0444 (0555 if executable) whatever the
    umask: every instance's user must read them, none may change them."""
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
        os.chmod(dest, 0o755)
        written = 0
        has_python = False
        for entry in entries:
            parts = _safe_parts(entry.filename)
            if not parts:
                continue
            target = dest.joinpath(*parts)
            mode = entry.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise BadPackage(f"code package entry {entry.filename!r} is a symlink")
            if entry.is_dir():
                _mkdirs(dest, parts)
                continue
            _mkdirs(dest, parts[:-1])
            has_python = has_python or target.suffix == ".py"
            with archive.open(entry) as src, open(target, "wb") as out:
                # Count real bytes: a forged header must not let a bomb through.
                while chunk := src.read(1024 * 1024):
                    written += len(chunk)
                    if written > max_bytes:
                        raise BadPackage(
                            f"code package unpacks to more than {max_bytes // (1024 * 1024)} MB"
                        )
                    out.write(chunk)
            # Keep the executable bit (binaries in a package); the code is read-only for instances.
            os.chmod(target, 0o555 if mode & 0o111 else 0o444)
    return has_python


def _mkdirs(dest: Path, parts: tuple[str, ...]) -> None:
    path = dest
    for part in parts:
        path = path / part
        if not path.is_dir():
            path.mkdir()
            os.chmod(path, 0o755)


def _safe_parts(name: str) -> tuple[str, ...]:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or any(part == ".." for part in path.parts):
        raise BadPackage(f"code package entry {name!r} escapes the code directory")
    return tuple(part for part in path.parts if part not in ("", "."))
