"""The in-sandbox runtime shims. Each is a standalone program, never imported by the agent."""

from __future__ import annotations

from pathlib import Path

PYTHON_BOOTSTRAP = Path(__file__).resolve().parent / "python" / "bootstrap.py"
