"""Sandbox drivers behind one ABC, chosen by NIMBUS_SANDBOX."""

from __future__ import annotations

from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.sandbox.base import SandboxDriver, SandboxHandle, SandboxSpec

__all__ = ["SandboxDriver", "SandboxHandle", "SandboxSpec", "new_driver"]


def new_driver(name: str, layout: NodeLayout, *, python: str) -> SandboxDriver:
    if name == "process":
        from nimbus.nodeagent.sandbox.process import ProcessDriver

        return ProcessDriver(layout, python=python)
    raise ValueError(f"unknown sandbox driver {name!r}")
