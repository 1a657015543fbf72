"""Deploys one of the example Lambda apps with its HTTP trigger, as its users package it for Lambda:

    .venv/bin/python examples/deploy.py powertools-rest [--name NAME]

Each example is a directory with the app's code, its dependencies (requirements.txt for Python,
package.json for Node.js) and nimbus.json (runtime, handler, memory_mb, timeout_s, env, and the
trigger's payload_format, "1.0" by default). The
dependencies are installed as Lambda users install them (`pip install --target` of manylinux
cp311 wheels, `npm install --omit=dev`) into a cache keyed by the runtime and the dependency
files (NIMBUS_APPS_CACHE, default ~/.cache/nimbus-test-apps), zipped with the code, deployed with
`nimbus deploy`, and given an HTTP trigger (`nimbus trigger add --type http`); the script prints
the trigger's URL. The CLI finds the cluster as always (NIMBUS_ENDPOINT/NIMBUS_API_KEY or
.nimbus/credentials.json).

The event's path is relative to the trigger's mount point (/fn/NAMESPACE/NAME/users/9 reaches
the app as /users/9, as a function URL's does), so the apps route as they do on Lambda, with no
base-path option set.

Standard library only; tests/e2e/test_lambda_apps.py imports it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parent
ROOT = EXAMPLES.parent
# pip resolves wheels for the sandbox's interpreter (/usr/bin/python3.11), whatever runs this.
PIP_PLATFORM = [
    "--only-binary=:all:",
    "--implementation",
    "cp",
    "--python-version",
    "3.11",
    "--abi",
    "cp311",
    *(
        arg
        for platform in (
            "manylinux2014_x86_64",
            "manylinux_2_17_x86_64",
            "manylinux_2_28_x86_64",
            "manylinux1_x86_64",
            "manylinux_2_5_x86_64",
        )
        for arg in ("--platform", platform)
    ),
]
_DEPENDENCY_FILES = ("requirements.txt", "package.json")
_SKIP = {"__pycache__", "node_modules", "nimbus.json", *_DEPENDENCY_FILES, "package-lock.json"}


def cache_root() -> Path:
    return Path(os.environ.get("NIMBUS_APPS_CACHE") or Path.home() / ".cache" / "nimbus-test-apps")


def settings(app: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((app / "nimbus.json").read_text())
    return data


def vendor(app: Path) -> Path | None:
    """The app's dependencies, installed once per runtime and dependency list; None if it has
    none. Concurrent runs each install into a temp dir and the first rename wins."""
    runtime = settings(app)["runtime"]
    deps = [(n, (app / n).read_bytes()) for n in _DEPENDENCY_FILES if (app / n).exists()]
    if not deps:
        return None
    key = hashlib.sha256(repr((runtime, PIP_PLATFORM, deps)).encode()).hexdigest()[:16]
    done = cache_root() / f"{app.name}-{key}"
    if done.is_dir():
        return done
    done.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{app.name}-", dir=done.parent))
    try:
        if runtime.startswith("python"):
            pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
            pip += ["--no-input", "--target", str(work), *PIP_PLATFORM]
            run([*pip, "-r", str(app / "requirements.txt")])
        else:
            shutil.copy(app / "package.json", work / "package.json")
            npm = ["npm", "install", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"]
            run(npm, cwd=work)
            (work / "package.json").unlink()
            (work / "package-lock.json").unlink(missing_ok=True)
        try:
            work.rename(done)
        except OSError:  # another run got there first
            shutil.rmtree(work, ignore_errors=True)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return done


def run(cmd: list[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{done.stderr[-3000:]}")
    return done.stdout


def build_zip(app: Path) -> bytes:
    """The app's code and its vendored dependencies in one zip, as uploaded to Lambda."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        _add_tree(zf, app, "", skip=_SKIP)
        vendored = vendor(app)
        if vendored is not None:
            # At the zip's root: Python packages beside the code (pip --target), node_modules/.
            _add_tree(zf, vendored, "", skip={"__pycache__"})
    return buf.getvalue()


def _add_tree(zf: zipfile.ZipFile, root: Path, prefix: str, skip: set[str]) -> None:
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.is_dir() or skip.intersection(rel.parts) or path.is_symlink() and path.is_dir():
            continue
        info = zipfile.ZipInfo(prefix + rel.as_posix())
        info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, path.read_bytes())


def cli() -> list[str]:
    found = shutil.which("nimbus")
    return [found] if found else [str(ROOT / ".venv" / "bin" / "nimbus")]


def deploy(
    app: Path,
    name: str,
    cli_env: Mapping[str, str] | None = None,
    payload_format: str | None = None,
) -> str:
    """Deploys the app as `name` with an HTTP trigger; its URL path (/fn/NAMESPACE/NAME).
    cli_env: the CLI's environment (default this process's); payload_format: the trigger's
    (default nimbus.json's, else 1.0)."""
    cfg = settings(app)
    if payload_format:
        cfg["payload_format"] = payload_format
    with tempfile.TemporaryDirectory() as tmp:
        package = Path(tmp) / f"{app.name}.zip"
        package.write_bytes(build_zip(app))
        cmd = [*cli(), "deploy", name, "--src", str(package), "--runtime", cfg["runtime"]]
        cmd += ["--handler", cfg["handler"], "--memory", str(cfg.get("memory_mb", 256))]
        cmd += ["--timeout", str(cfg.get("timeout_s", 10))]
        if cfg.get("env"):
            cmd += ["--env", *(f"{k}={v}" for k, v in cfg["env"].items())]
        run(cmd, env=cli_env)
    add = [*cli(), "trigger", "add", name, "--type", "http", "--json"]
    if cfg.get("payload_format"):
        add += ["--payload-format", str(cfg["payload_format"])]
    return str(json.loads(run(add, env=cli_env))["url"])


def main() -> None:
    apps = sorted(p.name for p in EXAMPLES.iterdir() if (p / "nimbus.json").exists())
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", choices=apps)
    parser.add_argument("--name", help="the function's name (default: the app's)")
    parser.add_argument(
        "--payload-format",
        choices=("1.0", "2.0"),
        help="the HTTP trigger's payload format (default: nimbus.json's, else 1.0)",
    )
    args = parser.parse_args()
    path = deploy(EXAMPLES / args.app, args.name or args.app, payload_format=args.payload_format)
    print(f"{endpoint().rstrip('/')}{path}")


def endpoint() -> str:
    """The gateway the CLI talks to: NIMBUS_ENDPOINT, else .nimbus/credentials.json's."""
    if os.environ.get("NIMBUS_ENDPOINT"):
        return os.environ["NIMBUS_ENDPOINT"]
    home = Path(os.environ.get("NIMBUS_HOME") or ROOT / ".nimbus")
    try:
        return str(json.loads((home / "credentials.json").read_text())["endpoint"])
    except (OSError, ValueError, KeyError):
        return "http://127.0.0.1:8080"


if __name__ == "__main__":
    main()
