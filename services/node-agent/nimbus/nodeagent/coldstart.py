"""The first half of a cold start: a sandbox of the right runtime and the function's code.

With a warm sandbox pooled, the code is fetched (usually: found in the cache) first, so a bad
package never costs a pooled sandbox, and the sandbox is taken after. With the pool empty, a fresh
sandbox boots while the code is fetched, and the two waits overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Protocol

from nimbus.nodeagent.boot import Booter, Sandbox
from nimbus.nodeagent.spec import InstanceSpec


class CodeStore(Protocol):
    async def acquire(self, sha256: str) -> Path: ...
    def release(self, sha256: str) -> None: ...


class SandboxSource(Protocol):
    """The warm pool (pool.py)."""

    def available(self, runtime: str) -> int: ...
    def take(self, runtime: str) -> Sandbox | None: ...


async def sandbox_with_code(
    pool: SandboxSource, booter: Booter, code: CodeStore, spec: InstanceSpec
) -> tuple[Sandbox, Path, bool]:
    """(sandbox, held code directory, whether the sandbox came from the pool)."""
    runtime = spec.config.runtime
    pooled = pool.available(runtime) > 0
    booting = None if pooled else asyncio.ensure_future(booter.boot(runtime))
    try:
        code_dir = await code.acquire(spec.code_sha256)
    except BaseException:
        if booting is not None:
            booting.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(booter.discard(await booting))
        raise
    try:
        # Another cold start may have emptied the pool meanwhile: then boot after all.
        sb = None if booting is not None else pool.take(runtime)
        pooled = sb is not None
        if sb is None:
            sb = await booting if booting is not None else await booter.boot(runtime)
    except BaseException:
        code.release(spec.code_sha256)
        raise
    return sb, code_dir, pooled
