"""The runc command line, under one node's own --root, each call bounded by a timeout."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from pathlib import Path

from nimbus.common.logs import kv

log = logging.getLogger(__name__)

TIMEOUT_S = 15.0


class RuncCli:
    def __init__(self, binary: str, state_root: Path) -> None:
        self._binary = binary
        self._root = state_root

    async def run(
        self,
        *args: str,
        stdout: int | None = None,
        stderr: int | None = None,
        timeout_s: float = TIMEOUT_S,
    ) -> tuple[int, str]:
        """(exit code, output); with `stdout` and `stderr`, runc's output (and its container's) go
        there instead."""
        proc = await asyncio.create_subprocess_exec(
            self._binary,
            "--root",
            str(self._root),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=stdout if stdout is not None else asyncio.subprocess.PIPE,
            stderr=stderr
            if stderr is not None
            else stdout
            if stdout is not None
            else asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(timeout_s):
                out, _ = await proc.communicate()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        return proc.returncode or 0, (out or b"").decode(errors="replace").strip()

    async def delete(self, container_id: str) -> None:
        """Kills (if needed) and deletes a container, its state and its cgroup."""
        code, out = await self.run("delete", "--force", container_id)
        if code != 0:
            log.warning("runc delete failed", extra=kv(container=container_id, output=out[-300:]))

    async def container_ids(self, prefix: str) -> list[str]:
        """Containers under this --root whose id starts with prefix."""
        if not self._root.is_dir():
            return []
        code, out = await self.run("list", "--format", "json")
        if code != 0:
            log.warning("runc list failed", extra=kv(output=out[-500:]))
            return []
        return [
            c["id"]
            for c in json.loads(out or "null") or []
            if str(c.get("id", "")).startswith(prefix)
        ]
