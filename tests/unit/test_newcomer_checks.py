"""Issue 26, newcomer polish, off the CLI: funcmgr's package messages and handler check, the
gateway's 413 body, the 404's namespace, `make install`'s output and the README's tour."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from nimbus.cluster import envoy
from nimbus.common.errors import InvalidArgument, NotFound, TooLarge
from nimbus.common.model import FunctionConfig, FunctionRecord
from nimbus.funcmgr.functions import FunctionManager
from nimbus.funcmgr.package import PackageLimits, check_package, handler_warnings
from nimbus.funcmgr.versions import VersionManager

REPO = Path(__file__).resolve().parents[2]
LIMITS = PackageLimits(max_zip_bytes=1024 * 1024, max_unzipped_bytes=2 * 1024 * 1024)


def make_zip(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


# -- 26.1: the limits are named --------------------------------------------------------------------


def test_the_gateways_413_names_the_limit_and_the_streaming_upload() -> None:
    mappers = json.loads(envoy.local_reply_mappers(max_zip_mb=50))
    by_status = {
        m["filter"]["and_filter"]["filters"][0]["status_code_filter"]["comparison"]["value"][
            "default_value"
        ]: m["body_format_override"]["json_format"]
        for m in mappers
    }
    message = by_status[413]["message"]
    assert by_status[413]["code"] == 11
    assert str(envoy.max_body_bytes(50)) in message and "NIMBUS_MAX_ZIP_MB" in message
    assert "UploadCode" in message and "nimbus deploy" in message
    assert by_status[404]["message"] == "%LOCAL_REPLY_BODY%"  # the others keep Envoy's text


def test_funcmgrs_size_error_names_the_limit_in_mib() -> None:
    with pytest.raises(TooLarge, match=r"1\.5 MiB, over the limit of 1 MiB \(NIMBUS_MAX_ZIP_MB\)"):
        check_package(b"x" * (3 << 19), "python3.11", "main.handler", LIMITS)


# -- 26.3: a zip of the folder instead of its contents ---------------------------------------------


@pytest.mark.parametrize(
    ("runtime", "handler", "entry"),
    [
        ("python3.11", "main.handler", "hello/main.py"),
        ("nodejs20", "index.handler", "hello/index.js"),
        ("provided", "anything", "hello/bootstrap"),
    ],
)
def test_a_zipped_folder_is_named_with_the_fix(runtime: str, handler: str, entry: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_package(make_zip({entry: ""}), runtime, handler, LIMITS)
    text = str(err.value)
    assert f"it has {entry}" in text and "the folder hello/ instead of its contents" in text
    assert "cd hello && zip -r ../code.zip ." in text


def test_a_missing_file_without_a_folder_keeps_the_plain_message() -> None:
    with pytest.raises(InvalidArgument, match="needs main.py in the zip, which is not there"):
        check_package(make_zip({"other.py": ""}), "python3.11", "main.handler", LIMITS)


# -- 26.9: the handler's function is looked for at deploy ------------------------------------------


@pytest.mark.parametrize(
    ("source", "handler"),
    [
        ("def handler(event, context):\n    return 1\n", "main.handler"),
        ("async def handler(event, context):\n    return 1\n", "main.handler"),
        ("from app import handler\n", "main.handler"),
        ("import app as handler\n", "main.handler"),
        ("handler = make()\n", "main.handler"),
        ("handler: object = make()\n", "main.handler"),
        ("a, handler = 1, 2\n", "main.handler"),
        (
            "try:\n    from fast import handler\nexcept ImportError:\n    handler = None\n",
            "main.handler",
        ),
        ("if True:\n    def handler(e, c): pass\n", "main.handler"),
        ("class handler:\n    pass\n", "main.handler"),
        ("from app import *\n", "main.handler"),  # cannot tell: no warning
        ("def __getattr__(name): ...\n", "main.handler"),
        ("globals()['handler'] = 1\n", "main.handler"),
    ],
)
def test_no_warning_when_the_module_may_define_the_handler(source: str, handler: str) -> None:
    assert handler_warnings(make_zip({"main.py": source}), "python3.11", handler) == []


def test_a_missing_function_is_named_with_the_close_match() -> None:
    data = make_zip(
        {"main.py": "def handler(event, context):\n    return 1\n\ndef helper(): ...\n"}
    )
    [warning] = handler_warnings(data, "python3.11", "main.handle")
    assert "main.py has no top-level def, assignment or import of 'handle'" in warning
    assert "did you mean main.handler?" in warning and "Runtime.HandlerNotFound" in warning


def test_a_function_defined_only_inside_another_is_not_top_level() -> None:
    data = make_zip({"pkg/app.py": "def outer():\n    def handler(e, c): ...\n"})
    [warning] = handler_warnings(data, "python3.11", "pkg.app.handler")
    assert "pkg/app.py has no top-level" in warning and "its functions: outer" in warning


def test_a_python_syntax_error_is_named_with_its_line_and_column() -> None:
    data = make_zip({"main.py": "def handler(event, context):\n    return }\n"})
    [warning] = handler_warnings(data, "python3.11", "main.handler")
    assert warning.startswith("handler: main.py, line 2, column 12: SyntaxError:"), warning


def test_other_runtimes_get_no_python_check() -> None:
    assert handler_warnings(make_zip({"index.js": "}}"}), "nodejs20", "index.handler") == []


def test_warnings_are_answered_but_never_stored() -> None:
    record = FunctionRecord(
        "ns", "f", FunctionConfig("python3.11", "main.handler"), "sha", 1, "t", "t", 3, ("w",)
    )
    assert "warnings" not in json.loads(record.to_json())
    assert FunctionRecord.from_json(record.to_json()).warnings == ()


class MemoryStore:
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], FunctionRecord] = {}

    async def get(self, namespace: str, name: str) -> FunctionRecord | None:
        return self.records.get((namespace, name))

    async def list(self, namespace: str) -> list[FunctionRecord]:
        return [r for (ns, _), r in self.records.items() if ns == namespace]

    async def create(self, record: FunctionRecord) -> int | None:
        self.records[(record.namespace, record.name)] = record
        return 1

    async def replace(self, record: FunctionRecord, expected_revision: int) -> int | None:
        self.records[(record.namespace, record.name)] = record
        return expected_revision + 1

    async def delete(self, namespace: str, name: str, revision: int) -> bool:
        return self.records.pop((namespace, name), None) is not None


class MemoryCode:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}

    async def put(self, data: bytes) -> str:
        sha = f"sha{len(self.blobs)}"
        self.blobs[sha] = data
        return sha

    async def get(self, sha256: str) -> bytes | None:
        return self.blobs.get(sha256)


class StillClock:
    def now(self) -> float:
        return 1_800_000_000.0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        return None


def manager() -> FunctionManager:
    return FunctionManager(MemoryStore(), MemoryCode(), LIMITS, StillClock())


def test_create_and_code_update_answer_the_warnings() -> None:
    async def scenario() -> None:
        core = manager()
        config = FunctionConfig("python3.11", "main.handle")
        bad = make_zip({"main.py": "def handler(e, c): pass\n"})
        created = await core.create("ns", "f", config, bad)
        assert len(created.warnings) == 1 and "'handle'" in created.warnings[0]
        good = make_zip({"main.py": "def handle(e, c): pass\n"})
        assert (await core.update_code("ns", "f", good, 0)).warnings == ()
        assert (await core.get("ns", "f")).warnings == ()

    asyncio.run(scenario())


def test_a_handler_change_is_checked_against_the_stored_code() -> None:
    async def scenario() -> None:
        core = manager()
        code = make_zip({"main.py": "def handler(e, c): pass\n"})
        await core.create("ns", "f", FunctionConfig("python3.11", "main.handler"), code)
        changed = await core.update_config("ns", "f", {"handler": "main.handle"}, False, 0)
        assert len(changed.warnings) == 1 and "did you mean main.handler?" in changed.warnings[0]
        other = await core.update_config("ns", "f", {"memory_mb": 256}, False, 0)
        assert other.warnings == ()  # no handler change, no check

    asyncio.run(scenario())


# -- 26.6: a 404 names the namespace ---------------------------------------------------------------


def test_a_missing_function_names_the_namespace() -> None:
    async def scenario() -> None:
        with pytest.raises(NotFound, match="function 'nope' not found in namespace 'team-a'"):
            await manager().get("team-a", "nope")
        versions = VersionManager(MemoryStore(), StillClock())  # type: ignore[arg-type]
        with pytest.raises(NotFound, match="in namespace 'team-a'"):
            await versions.publish("team-a", "nope", "", 0)

    asyncio.run(scenario())


# -- 26.10: the README's tour takes the port and the paths from the credentials --------------------


def tour() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## A one-minute tour")
    return text[start : text.index("\n## ", start + 1)]


def test_the_tour_hard_codes_no_port_or_tmp_path() -> None:
    section = tour()
    assert "127.0.0.1:8080" not in section and "/tmp/hello" not in section
    assert "credentials.json" in section and "mktemp -d" in section


def test_the_readme_shows_make_ups_first_run_as_steps() -> None:
    text = (REPO / "README.md").read_text()
    assert ".venv/install.log" in text


# -- 26.11: make install shows steps, not pip's log ------------------------------------------------


IGNORED = "is ignored: it is neither a file nor a directory."
PIP_OUTPUT = f"""Looking in indexes: https://pypi.org/simple, file:///opt/pypi/simple
WARNING: Location 'file:///opt/pypi-more/simple/grpcio/' {IGNORED}
Collecting grpcio>=1.60 (from nimbus==0.1.0)
  Downloading grpcio-1.85.4-cp311-cp311-manylinux2014_x86_64.whl (7.4 MB)
WARNING: Location 'file:///opt/pypi/simple/protobuf/' {IGNORED}
Processing /opt/pypi/files/protobuf-7.36.2-cp310-abi3-manylinux2014_x86_64.whl (from nimbus==0.1.0)
Installing collected packages: protobuf, grpcio, nimbus
Successfully installed grpcio-1.85.4 nimbus-0.1.0 protobuf-7.36.2
"""


def test_install_filters_pips_noise_and_keeps_the_full_log(tmp_path: Path) -> None:
    script = (REPO / "scripts" / "install.sh").read_text()
    function = re.search(r"^pip_progress\(\) \{\n.*?^\}\n", script, re.S | re.M)
    assert function is not None
    log = tmp_path / "install.log"
    done = subprocess.run(
        ["bash", "-c", f'LOG="$1"\n{function.group(0)}\npip_progress', "-", str(log)],
        input=PIP_OUTPUT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Location" not in done.stdout and "Downloading" not in done.stdout
    assert done.stdout.splitlines() == [
        "    resolving and downloading packages ...",
        "    installing 3 packages ...",
        "    installed 3 packages",
    ]
    assert log.read_text() == PIP_OUTPUT
    assert "pip's full log is $LOG" in script
