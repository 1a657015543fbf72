"""GET /v{1,2}/functions/{name}/code: the package a function (or one of its versions) runs, as its
files or as the zip. The console's editor opens it.

`package_files` is pure (zip bytes in, files out) and bounds what it reads: a text file is given
whole up to MAX_TEXT_FILE_BYTES and while the answer's text stays under MAX_TEXT_TOTAL_BYTES;
every other file is listed with its size and why it has no content.
"""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Protocol

from nimbus.common import validation
from nimbus.common.auth import Principal
from nimbus.common.errors import InvalidArgument
from nimbus.common.model import AliasRecord, FunctionRecord, VersionRecord

LATEST = "$LATEST"
FORMATS = ("files", "zip")
MAX_TEXT_FILE_BYTES = 1024 * 1024
MAX_TEXT_TOTAL_BYTES = 16 * 1024 * 1024

OMITTED_BINARY = "binary"
OMITTED_TOO_LARGE = "too_large"


@dataclass(frozen=True, slots=True)
class CodeFile:
    path: str
    size: int
    content: str = ""
    # "" (content given), OMITTED_BINARY or OMITTED_TOO_LARGE.
    omitted: str = ""


@dataclass(frozen=True, slots=True)
class FunctionCode:
    name: str
    version: str
    code_sha256: str
    code_size: int
    runtime: str
    handler: str
    revision: int
    files: tuple[CodeFile, ...] = ()
    zip_bytes: bytes = b""


class CodeBackend(Protocol):
    async def get(self, namespace: str, name: str) -> FunctionRecord: ...
    async def get_version(self, namespace: str, name: str, version: str) -> VersionRecord: ...
    async def get_alias(self, namespace: str, name: str, alias: str) -> AliasRecord: ...
    def fetch_code(self, sha256: str) -> AsyncIterator[bytes]: ...


def _is_text(data: bytes) -> str | None:
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def package_files(
    zip_bytes: bytes,
    *,
    max_file_bytes: int = MAX_TEXT_FILE_BYTES,
    max_total_bytes: int = MAX_TEXT_TOTAL_BYTES,
) -> tuple[CodeFile, ...]:
    """Every file of the zip, sorted by path; directories are left out."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(zip_bytes))
    except zipfile.BadZipFile as err:
        raise InvalidArgument(f"code: the stored package is not a zip ({err})") from err
    out: list[CodeFile] = []
    budget = max_total_bytes
    with archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            if info.is_dir():
                continue
            size = info.file_size
            if size > max_file_bytes or size > budget:
                out.append(CodeFile(info.filename, size, omitted=OMITTED_TOO_LARGE))
                continue
            # Read at most the declared size plus one byte: a lying header cannot blow the budget.
            with archive.open(info) as f:
                data = f.read(size + 1)
            text = _is_text(data[:size]) if len(data) == size else None
            if text is None:
                out.append(CodeFile(info.filename, size, omitted=OMITTED_BINARY))
                continue
            budget -= size
            out.append(CodeFile(info.filename, size, content=text))
    return tuple(out)


class CodeApi:
    def __init__(self, backend: CodeBackend) -> None:
        self._backend = backend

    async def get(self, who: Principal, name: str, qualifier: str, fmt: str) -> FunctionCode:
        validation.check_name(name)
        fmt = fmt or "files"
        if fmt not in FORMATS:
            raise InvalidArgument(f"format: {fmt!r} must be one of {', '.join(FORMATS)}")
        qualifier = qualifier or LATEST
        if qualifier == LATEST:
            record = await self._backend.get(who.namespace, name)
            version, config, sha, size = LATEST, record.config, record.code_sha256, record.code_size
            revision = record.revision
        else:
            if not qualifier.isdigit():
                qualifier = (await self._backend.get_alias(who.namespace, name, qualifier)).version
            v = await self._backend.get_version(who.namespace, name, qualifier)
            version, config, sha, size = v.version, v.config, v.code_sha256, v.code_size
            revision = (await self._backend.get(who.namespace, name)).revision
        zip_bytes = b"".join([c async for c in self._backend.fetch_code(sha)])
        code = FunctionCode(name, version, sha, size, config.runtime, config.handler, revision)
        if fmt == "zip":
            return replace(code, zip_bytes=zip_bytes)
        # Unzipping is CPU work: off the event loop.
        return replace(code, files=await asyncio.to_thread(package_files, zip_bytes))
