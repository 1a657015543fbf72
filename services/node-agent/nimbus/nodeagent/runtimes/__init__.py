"""The in-sandbox runtime shims. Each is a standalone program, never imported by the agent."""

from __future__ import annotations

from pathlib import Path

RUNTIMES_DIR = Path(__file__).resolve().parent
PYTHON_BOOTSTRAP = RUNTIMES_DIR / "python" / "bootstrap.py"
NODE_BOOTSTRAP = RUNTIMES_DIR / "node" / "bootstrap.js"
PROVIDED_BOOTSTRAP = RUNTIMES_DIR / "provided" / "bootstrap.py"
# What a sandbox needs of this directory; the runc driver copies exactly these into each node.
SHIM_FILES = (
    "python/bootstrap.py",
    "node/bootstrap.js",
    "provided/bootstrap.py",
    "provided/nolisten.py",
)
RUNTIMES = ("python3.11", "nodejs20", "provided")


def shim_argv(runtime: str, root: Path | str, *, python: str, node: str) -> list[str]:
    """The command line of a runtime's shim, with its scripts under `root` (as the sandbox sees it).

    Python runs with -s (no user site-packages, so the host user's packages cannot leak into a
    function); the `provided` shim is Python too: it serves the Lambda Runtime API.
    """
    base = Path(root)
    if runtime == "python3.11":
        return [python, "-s", str(base / "python" / "bootstrap.py")]
    if runtime == "nodejs20":
        return [node, str(base / "node" / "bootstrap.js")]
    if runtime == "provided":
        return [python, "-s", str(base / "provided" / "bootstrap.py")]
    raise ValueError(f"unknown runtime {runtime!r}")
