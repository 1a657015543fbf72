"""Checks a code package before anything is stored. Pure: bytes in, a verdict out."""

from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass

from nimbus.common.errors import InvalidArgument, TooLarge

MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class PackageLimits:
    max_zip_bytes: int
    max_unzipped_bytes: int


def handler_file(runtime: str, handler: str) -> str | None:
    """The file a handler names inside the zip; None when the runtime has no such rule."""
    if runtime == "python3.11":
        module = handler.rpartition(".")[0]
        return module.replace(".", "/") + ".py"
    if runtime == "nodejs20":
        return handler.rpartition(".")[0]  # index.handler → index(.js|.mjs|.cjs), checked below
    if runtime == "provided":
        return "bootstrap"
    return None


def check_package(zip_bytes: bytes, runtime: str, handler: str, limits: PackageLimits) -> None:
    if not zip_bytes:
        raise InvalidArgument("code.zip_base64: required, the base64 of a zip archive")
    if len(zip_bytes) > limits.max_zip_bytes:
        raise TooLarge(
            f"code.zip_base64: the zip is {len(zip_bytes) / 1048576:.1f} MiB, over the limit of "
            f"{limits.max_zip_bytes / 1048576:g} MiB (NIMBUS_MAX_ZIP_MB)"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile:
        raise InvalidArgument("code.zip_base64: not a zip archive") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ENTRIES:
            raise InvalidArgument(
                f"code.zip_base64: {len(infos)} entries, over the limit of {MAX_ENTRIES}"
            )
        total = 0
        names = set()
        for info in infos:
            name = info.filename
            if (
                name.startswith("/")
                or "\\" in name
                or any(part == ".." for part in name.split("/"))
            ):
                raise InvalidArgument(
                    f"code.zip_base64: entry {name!r} has an absolute or '..' path"
                )
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InvalidArgument(
                    f"code.zip_base64: entry {name!r} is a symlink, which is not allowed"
                )
            total += info.file_size
            names.add(name)
        if total > limits.max_unzipped_bytes:
            raise TooLarge(
                f"code.zip_base64: unzipped size {total / 1048576:.1f} MiB is over the limit of "
                f"{limits.max_unzipped_bytes / 1048576:g} MiB (NIMBUS_MAX_UNZIPPED_MB)"
            )
    wanted = handler_file(runtime, handler)
    if wanted is None:
        return
    if runtime == "nodejs20":
        candidates = {wanted + ext for ext in (".js", ".mjs", ".cjs")}
    else:
        candidates = {wanted}
    if not candidates & names:
        raise InvalidArgument(
            f"handler: {handler!r} needs {' or '.join(sorted(candidates))} "
            "in the zip, which is not there"
        )
