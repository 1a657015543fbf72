"""Checks `nimbus deploy` runs on the package before it uploads it, where this machine can.

A Node.js handler's file goes through `node --check` when `node` is on PATH: a syntax error is
reported as `node --check` reports it, with the file, line and column (`index.js:3:2`), before
the first call fails with only "Unexpected token '}'". The check warns and never blocks: the
local node may differ from the cluster's nodejs20. (Python handlers are checked by funcmgr at
deploy, with `ast`, and its warnings come back in the answer.)
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

NODE_EXTENSIONS = (".js", ".mjs", ".cjs")
CHECK_TIMEOUT_S = 10.0
_LOCATION = re.compile(r"^(?P<path>.+?):(?P<line>\d+)$")


def node_handler_entry(handler: str, names: list[str]) -> str | None:
    """The zip entry a nodejs20 handler loads ("lib/index.handler" → lib/index.js), if any."""
    slash = handler.rfind("/")
    dot = handler.find(".", slash + 1)
    if dot < 0:
        return None
    base = handler[:dot]
    for ext in NODE_EXTENSIONS:
        if base + ext in names:
            return base + ext
    return None


def describe_node_check(output: str, shown_name: str) -> str | None:
    """`node --check`'s report of a syntax error as `file:line:col: SyntaxError: ...` followed by
    the source line and its caret, or None when the output is not one. Pure."""
    lines = output.splitlines()
    if not lines:
        return None
    where = _LOCATION.match(lines[0].strip())
    error = next((x.strip() for x in lines if re.match(r"^\s*\w*Error: ", x)), None)
    if where is None or error is None:
        return None
    source = lines[1] if len(lines) > 1 else ""
    caret = lines[2] if len(lines) > 2 and lines[2].strip().startswith("^") else ""
    column = f":{caret.index('^') + 1}" if caret else ""
    text = f"{shown_name}:{where.group('line')}{column}: {error}"
    if source.strip():
        text += f"\n    {source}" + (f"\n    {caret}" if caret else "")
    return text


def check_node_syntax(zip_bytes: bytes, handler: str) -> str | None:
    """A warning when the handler's file does not parse under the local `node --check`; None
    when it parses, or when there is no node, no such file, or the check cannot run."""
    node = shutil.which("node")
    if node is None:
        return None
    try:
        with zipfile.ZipFile(io.BytesIO(zip_bytes)) as archive:
            names = archive.namelist()
            entry = node_handler_entry(handler, names)
            if entry is None:
                return None
            # The file, and the package.json files above it ("type": "module" decides how a
            # .js file parses).
            parents = [p.as_posix() for p in Path(entry).parents]
            wanted = [entry] + [
                f"{d}/package.json".removeprefix("./")
                for d in parents
                if f"{d}/package.json".removeprefix("./") in names
            ]
            files = {name: archive.read(name) for name in wanted}
    except zipfile.BadZipFile:
        return None
    with tempfile.TemporaryDirectory(prefix="nimbus-check-") as tmp:
        for name, data in files.items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        path = Path(tmp) / entry
        try:
            done = subprocess.run(
                [node, "--check", str(path)],
                capture_output=True,
                text=True,
                timeout=CHECK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
    if done.returncode == 0:
        return None
    described = describe_node_check(done.stderr.replace(str(path), entry), entry)
    if described is None:
        return None
    return (
        f"{described}\n  (node --check); every call will fail with "
        "Runtime.UserCodeSyntaxError until this is fixed"
    )
