"""Issue 26, newcomer polish, off the CLI: funcmgr's package messages and handler check, the
gateway's 413 body, the 404's namespace, `make install`'s output and the README's tour."""

from __future__ import annotations

import io
import json
import re
import subprocess
import zipfile
from pathlib import Path

import pytest
from nimbus.cluster import envoy
from nimbus.common.errors import TooLarge
from nimbus.funcmgr.package import PackageLimits, check_package

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
