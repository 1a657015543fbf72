"""Code packages: safe unpacking, sha256 verification, reuse, one download per package."""

from __future__ import annotations

import asyncio
import hashlib
import io
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nimbus.common.errors import InvalidArgument, Unavailable
from nimbus.nodeagent.codecache import BadPackage, CodeCache, extract_zip

pytestmark = pytest.mark.timeout(10)


def make_zip(files: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


class FakeSource:
    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.fetches = 0

    async def fetch(self, sha256: str) -> AsyncIterator[bytes]:
        self.fetches += 1
        data = self.blobs[sha256]
        for i in range(0, len(data), 7):
            await asyncio.sleep(0)
            yield data[i : i + 7]


def test_extract_keeps_tree_and_exec_bit(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("app.py", "x = 1\n")
        info = zipfile.ZipInfo("bin/tool")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("pkg/", "")
    (tmp_path / "p.zip").write_bytes(buf.getvalue())
    extract_zip(tmp_path / "p.zip", tmp_path / "out")
    assert (tmp_path / "out/app.py").read_text() == "x = 1\n"
    assert (tmp_path / "out/bin/tool").stat().st_mode & 0o111
    assert (tmp_path / "out/pkg").is_dir()


@pytest.mark.parametrize(
    "zip_bytes",
    [
        make_zip({"../evil.py": b"x"}),
        make_zip({"/abs.py": b"x"}),
        make_zip({"a/../../evil.py": b"x"}),
        make_zip({"ok.py": b"x"}, symlink="link"),
        b"not a zip",
    ],
)
def test_extract_refuses_unsafe(tmp_path: Path, zip_bytes: bytes) -> None:
    (tmp_path / "p.zip").write_bytes(zip_bytes)
    with pytest.raises(BadPackage):
        extract_zip(tmp_path / "p.zip", tmp_path / "out")
    assert not (tmp_path / "evil.py").exists()


def test_extract_refuses_too_large(tmp_path: Path) -> None:
    (tmp_path / "p.zip").write_bytes(make_zip({"big": b"0" * 10_000}))
    with pytest.raises(BadPackage, match="more than"):
        extract_zip(tmp_path / "p.zip", tmp_path / "out", max_bytes=5_000)


async def test_ensure_fetches_once_and_reuses(tmp_path: Path) -> None:
    data = make_zip({"app.py": b"def handler(e, c):\n    return e\n"})
    sha = hashlib.sha256(data).hexdigest()
    source = FakeSource({sha: data})
    cache = CodeCache(tmp_path, source)
    dirs = await asyncio.gather(*(cache.ensure(sha) for _ in range(5)))
    assert set(dirs) == {tmp_path / sha}
    assert (tmp_path / sha / "app.py").exists()
    assert source.fetches == 1
    assert await CodeCache(tmp_path, source).ensure(sha) == tmp_path / sha
    assert source.fetches == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [sha]  # no temp files left


async def test_ensure_rejects_corrupt_download(tmp_path: Path) -> None:
    sha = "0" * 64
    cache = CodeCache(tmp_path, FakeSource({sha: make_zip({"a.py": b""})}))
    with pytest.raises(Unavailable, match="corrupted"):
        await cache.ensure(sha)
    assert list(tmp_path.iterdir()) == []


async def test_ensure_rejects_bad_sha(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        await CodeCache(tmp_path, FakeSource({})).ensure("../../etc")


async def test_lru_eviction_under_the_budget_never_takes_held_code(tmp_path: Path) -> None:
    blobs = {}
    for name in ("a", "b", "c"):
        # Deflated: a tiny download (the fake source sends 7-byte chunks) that unpacks to 60 KB.
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            zf.writestr(f"{name}.bin", b"x" * 60_000)
        data = buf.getvalue()
        blobs[hashlib.sha256(data).hexdigest()] = data
    a, b, c = blobs
    cache = CodeCache(tmp_path, FakeSource(blobs), budget_mb=0)
    cache._budget = 130_000  # room for two packages (the budget is in MB from config)
    held = await cache.acquire(a)
    await cache.ensure(b)
    await cache.ensure(c)  # over budget: b (least recently used, unheld) goes; a is held
    assert held.is_dir() and not (tmp_path / b).exists() and (tmp_path / c).is_dir()
    cache.release(a)  # used until now: more recent than c
    await cache.ensure(b)  # fetched again; c is now the least recently used
    assert (tmp_path / a).is_dir() and (tmp_path / b).is_dir() and not (tmp_path / c).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([a, b])  # no trash left behind


async def test_a_restarted_cache_knows_what_is_on_disk(tmp_path: Path) -> None:
    data = make_zip({"app.py": b"x = 1\n"})
    sha = hashlib.sha256(data).hexdigest()
    source = FakeSource({sha: data})
    await CodeCache(tmp_path, source).ensure(sha)
    (tmp_path / ".tmp-deadbeef").mkdir()  # a crash mid-unpack
    again = CodeCache(tmp_path, source)
    assert await again.acquire(sha) == tmp_path / sha
    assert source.fetches == 1 and not (tmp_path / ".tmp-deadbeef").exists()
    assert again.usage()[sha].holders == 1
