"""Property-based tests of the input checks: they accept exactly what the rules allow and never
fail with anything but a clear InvalidArgument / TooLarge."""

from __future__ import annotations

import io
import re
import zipfile

from hypothesis import given, settings
from hypothesis import strategies as st
from nimbus.common import validation
from nimbus.common.errors import InvalidArgument, NimbusError, TooLarge
from nimbus.common.model import FunctionConfig
from nimbus.funcmgr.package import PackageLimits, check_package

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
LIMITS = PackageLimits(max_zip_bytes=256 * 1024, max_unzipped_bytes=512 * 1024)


@given(st.text(max_size=80))
def test_name_accepted_iff_it_matches_the_rule(name):
    try:
        validation.check_name(name)
        accepted = True
    except InvalidArgument as err:
        assert err.message.startswith("name: ")
        accepted = False
    assert accepted == bool(NAME.fullmatch(name))


@given(st.integers(-(10**6), 10**6), st.integers(-(10**4), 10**4))
def test_memory_and_timeout_ranges(memory, timeout):
    config = FunctionConfig("python3.11", "main.handler", memory_mb=memory, timeout_s=timeout)
    ok = 128 <= memory <= 10240 and 1 <= timeout <= 900
    try:
        validation.check_config(config)
        assert ok
    except InvalidArgument as err:
        assert not ok
        assert err.message.split(":")[0] in ("memory_mb", "timeout_s")


@given(st.dictionaries(st.text(max_size=20), st.text(max_size=300), max_size=20))
def test_env_errors_always_name_the_field(env):
    try:
        validation.check_env(env)
    except InvalidArgument as err:
        assert err.message.startswith("env: ")


segment = st.sampled_from(["a", "b.py", "..", ".", "dir", "main.py", ""])


@given(
    st.lists(st.lists(segment, min_size=1, max_size=4).map("/".join), min_size=1, max_size=6),
    st.booleans(),
)
@settings(max_examples=200)
def test_zip_paths_rejected_iff_absolute_or_dotdot(paths, leading_slash):
    names = list(
        dict.fromkeys(("/" + p if leading_slash and i == 0 else p) for i, p in enumerate(paths))
    )
    names = [n for n in names if n != "main.py"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("main.py", "def handler(e, c): return 1\n")
        for name in names:
            if name and not name.endswith("/"):
                info = zipfile.ZipInfo("placeholder")
                info.filename = name  # bypass zipfile's own normalisation, as a hostile zip would
                zf.writestr(info, b"x")
    written = [n for n in names if n and not n.endswith("/")]
    bad = any(n.startswith("/") or ".." in n.split("/") for n in written)
    try:
        check_package(buf.getvalue(), "python3.11", "main.handler", LIMITS)
        assert not bad
    except InvalidArgument as err:
        assert bad, err.message


@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_zip_check(data):
    try:
        check_package(data, "python3.11", "main.handler", LIMITS)
    except (InvalidArgument, TooLarge):
        pass
    except NimbusError as err:  # pragma: no cover - any other class is a bug
        raise AssertionError(err) from err
