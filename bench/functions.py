"""The functions the bench deploys, as source text, and their zip packages."""

from __future__ import annotations

import base64
import io
import zipfile

NOOP_SOURCE = "def handler(event, context):\n    return {}\n"

SLEEP_200MS_SOURCE = (
    "import time\n\n\ndef handler(event, context):\n    time.sleep(0.2)\n    return {}\n"
)

HANDLER = "main.handler"
RUNTIME = "python3.11"


def unique_noop(index: int) -> str:
    """A no-op whose code differs per function, so every cold start fetches its own package."""
    return f"# bench cold-start function {index}\n{NOOP_SOURCE}"


def zip_b64(source: str) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("main.py", source)
    return base64.b64encode(buf.getvalue()).decode()


def create_body(name: str, source: str, **extra: object) -> dict[str, object]:
    """The POST /v1/functions body for one Python function."""
    return {
        "name": name,
        "runtime": RUNTIME,
        "handler": HANDLER,
        "code": {"zip_base64": zip_b64(source)},
        **extra,
    }
