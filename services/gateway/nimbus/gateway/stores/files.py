"""Writes xDS files the way Envoy's path_config_source expects: a whole new file renamed over the
old one (a rename is atomic, and it is the event Envoy watches for); a file whose bytes did not
change is left alone, so Envoy only reloads what changed."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class XdsDirectory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, files: Mapping[str, bytes]) -> list[str]:
        """Writes the files that differ from what is on disk; returns their names."""
        self.directory.mkdir(parents=True, exist_ok=True)
        written = []
        for name, data in files.items():
            path = self.directory / name
            try:
                if path.read_bytes() == data:
                    continue
            except OSError:
                pass
            write_atomically(path, data)
            written.append(name)
        return written


def write_atomically(path: Path, data: bytes) -> None:
    """data lands at path whole or not at all:
    a temp file in the same directory, fsynced, renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
