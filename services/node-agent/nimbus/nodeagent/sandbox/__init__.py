"""Sandbox drivers behind one ABC, chosen by NIMBUS_SANDBOX (config.py)."""

from __future__ import annotations

from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.sandbox.base import Limits, SandboxDriver, SandboxHandle, SandboxSpec

__all__ = ["Limits", "SandboxDriver", "SandboxHandle", "SandboxSpec", "new_driver"]


def new_driver(
    name: str,
    layout: NodeLayout,
    node_id: str,
    *,
    python: str,
    node: str | None,
    runc: str | None = None,
    uids: range = range(10001, 10001 + 1024),
    tmp_mb: int = 512,
) -> SandboxDriver:
    if name == "process":
        from nimbus.nodeagent.sandbox.process import ProcessDriver

        return ProcessDriver(layout, python=python, node=node)
    if name == "runc":
        from nimbus.nodeagent.sandbox.runc import RuncDriver

        if runc is None:
            raise ValueError("the runc driver needs the runc binary")
        return RuncDriver(
            layout, node_id, runc=runc, python=python, node=node, uids=uids, tmp_mb=tmp_mb
        )
    raise ValueError(f"unknown sandbox driver {name!r}")
