"""zip_directory: deterministic bytes, relative paths, skipped caches, kept execute bits."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import pytest
from nimbus.client import zip_directory


def make_tree(root: Path) -> None:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "main.py").write_text("def handler(event, context):\n    return event\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "sub" / "data.json").write_text('{"a": 1}')
    (root / "bootstrap").write_text("#!/bin/sh\necho hi\n")
    (root / "bootstrap").chmod(0o755)
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\x00junk")
    (root / "pkg" / "__pycache__").mkdir()
    (root / "pkg" / "__pycache__" / "x.pyc").write_bytes(b"\x00junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "stray.pyc").write_bytes(b"\x00")


def test_entries_are_sorted_relative_and_filtered(tmp_path: Path) -> None:
    make_tree(tmp_path)
    with zipfile.ZipFile(io.BytesIO(zip_directory(tmp_path))) as zf:
        names = zf.namelist()
        assert names == ["bootstrap", "main.py", "pkg/__init__.py", "pkg/sub/data.json"]
        assert zf.read("pkg/sub/data.json") == b'{"a": 1}'
        assert zf.testzip() is None
        for info in zf.infolist():
            assert info.date_time == (1980, 1, 1, 0, 0, 0)


def test_same_tree_same_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    make_tree(a)
    make_tree(b)
    # Different mtimes must not matter.
    os.utime(b / "main.py", (1_000_000_000, 1_000_000_000))
    first = zip_directory(a)
    assert zip_directory(a) == first
    assert hashlib.sha256(zip_directory(b)).digest() == hashlib.sha256(first).digest()


def test_content_change_changes_bytes(tmp_path: Path) -> None:
    make_tree(tmp_path)
    before = zip_directory(tmp_path)
    (tmp_path / "main.py").write_text("changed")
    assert zip_directory(tmp_path) != before


def test_execute_bit_kept(tmp_path: Path) -> None:
    make_tree(tmp_path)
    with zipfile.ZipFile(io.BytesIO(zip_directory(tmp_path))) as zf:
        modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in zf.infolist()}
    assert modes["bootstrap"] == 0o755
    assert modes["main.py"] == 0o644


def test_symlink_cycle_ends(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.txt").write_text("x")
    (tmp_path / "d" / "loop").symlink_to(tmp_path)
    with zipfile.ZipFile(io.BytesIO(zip_directory(tmp_path))) as zf:
        assert zf.namelist() == ["d/f.txt"]


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError):
        zip_directory(tmp_path / "missing")
