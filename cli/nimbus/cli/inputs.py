"""Turning command-line values into request inputs; a bad value is a usage error (exit 2)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from nimbus.client import zip_directory


class UsageError(Exception):
    """A bad command line the parser could not catch; `main` prints it and exits 2."""


def read_event(value: str | None, stdin: BinaryIO | None) -> bytes:
    """The event for `--data`: a JSON text, `@path` for a file's contents, or `-` for stdin.

    The bytes are sent as given, once checked to be one JSON value; no `--data` means `{}`.
    """
    if value is None:
        return b"{}"
    if value == "-":
        if stdin is None:
            raise UsageError("--data -: there is no standard input to read")
        data, source = stdin.read(), "standard input"
    elif value.startswith("@"):
        path = Path(value[1:]).expanduser()
        if not value[1:]:
            raise UsageError("--data @FILE: the file name is missing")
        try:
            data = path.read_bytes()
        except OSError as e:
            raise UsageError(f"--data {value}: cannot read {path}: {e.strerror or e}") from e
        source = str(path)
    else:
        data, source = value.encode("utf-8"), "--data"
    if not data.strip():
        raise UsageError(f"the event from {source} is empty; pass a JSON value such as '{{}}'")
    try:
        json.loads(data)
    except ValueError as e:
        raise UsageError(f"the event from {source} is not valid JSON: {e}") from e
    return data


def parse_env_pairs(pairs: Sequence[str] | None) -> dict[str, str] | None:
    """`K=V` items into a dict (later ones win); None when no --env was given."""
    if not pairs:
        return None
    env: dict[str, str] = {}
    for item in pairs:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--env expects KEY=VALUE, got {item!r}")
        env[key.strip()] = value
    return env


def load_code(src: str) -> bytes:
    """The zip for `--src`: a directory is zipped deterministically; a `.zip` file is read as is."""
    path = Path(src).expanduser()
    if path.is_dir():
        return zip_directory(path)
    if path.is_file() and path.suffix.lower() == ".zip":
        return path.read_bytes()
    if not path.exists():
        raise UsageError(f"--src {src}: no such directory")
    raise UsageError(f"--src {src}: expected a directory or a .zip file")
