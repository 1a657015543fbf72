"""Client-side helpers: every call has a deadline, carries the caller's traceparent, and peer
errors come back as NimbusError."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from nimbus.common import tracing
from nimbus.common.errors import DeadlineExceeded, NimbusError, Unavailable, from_rpc_error

T = TypeVar("T")


async def call(
    fn: Callable[..., Awaitable[T]],
    request: object,
    *,
    timeout_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> T:
    """`await call(stub.Method, req, timeout_s=2)`; raises NimbusError subclasses only."""
    try:
        return await fn(
            request, timeout=timeout_s, metadata=tracing.with_traceparent(metadata) or None
        )
    except grpc.aio.AioRpcError as err:
        if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise DeadlineExceeded(f"peer did not answer within {timeout_s:.1f}s") from err
        mapped = from_rpc_error(err)
        if type(mapped) is NimbusError:
            raise Unavailable(f"peer failed: {err.code().name}: {err.details()}") from err
        raise mapped from err
