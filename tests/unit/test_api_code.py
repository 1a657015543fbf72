"""GET /v1/functions/{name}/code: the package as files (text given, binary and large listed)."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import AsyncIterator

import pytest
from nimbus.api import server as v1
from nimbus.api import v2server
from nimbus.api.code import CodeApi, package_files
from nimbus.common.auth import Principal
from nimbus.common.errors import InvalidArgument, NotFound
from nimbus.common.model import AliasRecord, FunctionConfig, FunctionRecord, VersionRecord


def zip_of(files: dict[str, bytes], dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for d in dirs:
            zf.writestr(zipfile.ZipInfo(d), b"")
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_text_files_come_with_their_text_sorted_and_directories_left_out():
    files = package_files(
        zip_of(
            {"main.py": b"def handler(e, c):\n    return 1\n", "lib/a.py": "é = 1".encode()},
            ("lib/",),
        )
    )
    assert [(f.path, f.content, f.omitted) for f in files] == [
        ("lib/a.py", "é = 1", ""),
        ("main.py", "def handler(e, c):\n    return 1\n", ""),
    ]
    assert files[0].size == len("é = 1".encode())


@pytest.mark.parametrize(
    "data",
    [b"\x89PNG\r\n\x1a\n\x00\x00", b"\xff\xfe\xfd", b"text with a \x00 in it"],
)
def test_binary_files_are_listed_without_content(data):
    (f,) = package_files(zip_of({"blob.bin": data}))
    assert (f.path, f.size, f.content, f.omitted) == ("blob.bin", len(data), "", "binary")


def test_large_files_and_files_past_the_budget_are_listed_as_too_large():
    files = package_files(
        zip_of({"a.txt": b"a" * 10, "b.txt": b"b" * 30, "c.txt": b"c" * 10, "d.txt": b"d" * 5}),
        max_file_bytes=20,
        max_total_bytes=22,
    )
    assert [(f.path, f.omitted) for f in files] == [
        ("a.txt", ""),
        ("b.txt", "too_large"),  # over the per-file limit
        ("c.txt", ""),
        ("d.txt", "too_large"),  # 10 + 10 + 5 is over the budget of 22
    ]


def test_a_stored_package_that_is_not_a_zip_is_an_error():
    with pytest.raises(InvalidArgument, match="not a zip"):
        package_files(b"not a zip")


CONFIG = FunctionConfig(runtime="python3.11", handler="main.handler", memory_mb=128, timeout_s=3)
OLD = zip_of({"main.py": b"old"})
NEW = zip_of({"main.py": b"new"})


class FakeBackend:
    def __init__(self) -> None:
        self.blobs = {"sha-new": NEW, "sha-old": OLD}

    async def get(self, namespace: str, name: str) -> FunctionRecord:
        if (namespace, name) != ("team", "hello"):
            raise NotFound(f"function {name!r} not found")
        return FunctionRecord(namespace, name, CONFIG, "sha-new", len(NEW), "t0", "t1", 7)

    async def get_version(self, namespace: str, name: str, version: str) -> VersionRecord:
        if version != "1":
            raise NotFound(f"version {version!r} not found")
        return VersionRecord(namespace, name, "1", "", CONFIG, "sha-old", len(OLD), "t0")

    async def get_alias(self, namespace: str, name: str, alias: str) -> AliasRecord:
        if alias != "live":
            raise NotFound(f"alias {alias!r} not found")
        return AliasRecord(namespace, name, alias, "1")

    async def fetch_code(self, sha256: str) -> AsyncIterator[bytes]:
        data = self.blobs[sha256]
        for i in range(0, len(data), 7):
            yield data[i : i + 7]


WHO = Principal(namespace="team", key_id="k", admin=False)


@pytest.mark.parametrize(
    ("qualifier", "version", "text"),
    [
        ("", "$LATEST", "new"),
        ("$LATEST", "$LATEST", "new"),
        ("1", "1", "old"),
        ("live", "1", "old"),
    ],
)
def test_the_code_of_latest_a_version_or_an_alias(qualifier, version, text):
    code = asyncio.run(CodeApi(FakeBackend()).get(WHO, "hello", qualifier, ""))
    assert (code.version, [f.content for f in code.files], code.zip_bytes) == (version, [text], b"")
    assert (code.runtime, code.handler, code.revision) == ("python3.11", "main.handler", 7)


def test_format_zip_gives_the_package_as_stored():
    code = asyncio.run(CodeApi(FakeBackend()).get(WHO, "hello", "", "zip"))
    assert (code.zip_bytes, code.files, code.code_sha256) == (NEW, (), "sha-new")


def test_bad_format_and_unknown_function_are_errors():
    api = CodeApi(FakeBackend())
    with pytest.raises(InvalidArgument, match="format"):
        asyncio.run(api.get(WHO, "hello", "", "tar"))
    with pytest.raises(NotFound):
        asyncio.run(api.get(WHO, "nope", "", ""))
    other = Principal(namespace="other", key_id="k2", admin=False)
    with pytest.raises(NotFound):
        asyncio.run(api.get(other, "hello", "", ""))


def test_v1_and_v2_messages_carry_the_same_fields():
    code = asyncio.run(CodeApi(FakeBackend()).get(WHO, "hello", "", ""))
    one = v1.code_to_pb(code)
    two = v2server.pb.FunctionCode(**v1.code_fields(code))
    assert one.SerializeToString(deterministic=True) == two.SerializeToString(deterministic=True)
    assert one.files[0].path == "main.py" and one.files[0].content == "new"
