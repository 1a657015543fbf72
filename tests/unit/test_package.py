import io
import stat
import zipfile

import pytest
from nimbus.common.errors import InvalidArgument, TooLarge
from nimbus.funcmgr.package import PackageLimits, check_package

LIMITS = PackageLimits(max_zip_bytes=1024 * 1024, max_unzipped_bytes=2 * 1024 * 1024)


def make_zip(files: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


def test_accepts_python_package_with_handler():
    check_package(
        make_zip({"main.py": b"def handler(e, c): return e"}), "python3.11", "main.handler", LIMITS
    )


def test_accepts_nested_module():
    check_package(make_zip({"pkg/app.py": b""}), "python3.11", "pkg.app.handler", LIMITS)


@pytest.mark.parametrize(
    "data, match",
    [
        (b"", "required"),
        (b"not a zip at all", "not a zip"),
        (make_zip({"other.py": b""}), "main.py"),
        (make_zip({"../evil.py": b"", "main.py": b""}), "'..'"),
        (make_zip({"/abs.py": b"", "main.py": b""}), "absolute"),
        (make_zip({"main.py": b""}, symlink="link"), "symlink"),
    ],
)
def test_rejects_bad_packages(data, match):
    with pytest.raises(InvalidArgument, match=match):
        check_package(data, "python3.11", "main.handler", LIMITS)


def test_rejects_oversized_zip():
    with pytest.raises(TooLarge, match="over the limit"):
        check_package(b"x" * (LIMITS.max_zip_bytes + 1), "python3.11", "main.handler", LIMITS)


def test_rejects_unzipped_size_over_limit():
    data = make_zip({"main.py": b"", "big.bin": b"\0" * (3 * 1024 * 1024)})
    with pytest.raises(TooLarge, match="unzipped"):
        check_package(data, "python3.11", "main.handler", LIMITS)


def test_node_handler_accepts_any_js_extension():
    check_package(make_zip({"index.mjs": b""}), "nodejs20", "index.handler", LIMITS)
