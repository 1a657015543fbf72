"""Server interceptors: telemetry, error mapping and authentication, built explicitly in each main
(telemetry first, so it times and traces everything the others do).

grpc.aio interceptors cannot see a handler's exceptions or share contextvars with it, so each
interceptor wraps the method handler's behaviour instead; the wrapper runs in the handler's task.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, NoReturn, TypeVar, cast

import grpc
from grpc.aio import ServerInterceptor
from nimbus.common import metrics, mtls, pki, tracing
from nimbus.common.auth import Authenticator, principal_var
from nimbus.common.errors import NimbusError, Throttled

log = logging.getLogger(__name__)

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")

# An interceptor wraps every method alike, so to it a request (or request stream) and a response
# are plain objects.
Context = grpc.aio.ServicerContext[object, object]
# A method's behaviour under grpc.aio: a coroutine function (unary response) or an async generator
# function (streamed response). grpc-stubs types RpcMethodHandler's fields for the sync server.
Unary = Callable[[object, Context], Awaitable[object]]
Stream = Callable[[object, Context], AsyncIterator[object]]


def _wrap(
    handler: grpc.RpcMethodHandler[_Req, _Resp],
    wrap_unary: Callable[[Unary], Unary],
    wrap_stream: Callable[[Stream], Stream],
) -> grpc.RpcMethodHandler[_Req, _Resp]:
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            wrap_unary(cast(Unary, handler.unary_unary)),
            handler.request_deserializer,
            handler.response_serializer,
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            wrap_unary(cast(Unary, handler.stream_unary)),
            handler.request_deserializer,
            handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            wrap_stream(cast(Stream, handler.unary_stream)),
            handler.request_deserializer,
            handler.response_serializer,
        )
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(
            wrap_stream(cast(Stream, handler.stream_stream)),
            handler.request_deserializer,
            handler.response_serializer,
        )
    return handler


async def _abort_for(err: Exception, context: Context, method: str) -> NoReturn:
    if isinstance(err, NotImplementedError):
        # The generated base servicer's answer for an RPC this version does not serve yet.
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented yet")
    if isinstance(err, Throttled):
        # Initial metadata of an error reply becomes HTTP headers at the gateway.
        await context.send_initial_metadata((("retry-after", str(err.retry_after_s)),))
    if isinstance(err, NimbusError):
        await context.abort(err.code, err.message)
    log.error("unhandled error", exc_info=err, extra={"fields": {"method": method}})
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")


def _metadata_value(context: Context, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode()
    return None


class _MemoizedInterceptor(ServerInterceptor):
    """Wraps each method's handler once: building closures and handler objects per call would
    cost every invoke on the hot path. The wrappers read what differs per call from the context."""

    def __init__(self) -> None:
        # Each method's own handler: its message types differ from method to method.
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[_Req, _Resp] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[_Req, _Resp] | None:
        wrapped = self._wrapped.get(details.method)
        if wrapped is None:
            handler = await continuation(details)
            if handler is None:
                return None
            wrapped = self._wrapped[details.method] = self._wrap_method(handler, details.method)
        return wrapped

    def _wrap_method(
        self, handler: grpc.RpcMethodHandler[_Req, _Resp], method: str
    ) -> grpc.RpcMethodHandler[_Req, _Resp]:
        raise NotImplementedError


def _code_name(context: Context) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    return "UNKNOWN" if code is None else str(code)


class TelemetryInterceptor(_MemoizedInterceptor):
    """Per call: a server span continuing the caller's traceparent (the trace id of every log line
    the call writes), and the call counted and timed by method and status code. Health checks are
    left alone: Envoy sends them every second. Series are bound once per method."""

    def __init__(self, untraced_prefixes: Iterable[str] = ("/grpc.health.v1.",)) -> None:
        super().__init__()
        self._untraced = tuple(untraced_prefixes)

    def _wrap_method(
        self, handler: grpc.RpcMethodHandler[_Req, _Resp], method: str
    ) -> grpc.RpcMethodHandler[_Req, _Resp]:
        if method.startswith(self._untraced):
            return handler
        name = method.lstrip("/")
        series = metrics.MethodSeries(name)
        clock = time.perf_counter

        def wrap_unary(fn: Unary) -> Unary:
            async def run(request: object, context: Context) -> object:
                token, span = tracing.start(name, _metadata_value(context, tracing.TRACEPARENT))
                t0 = clock()
                code = "OK"
                try:
                    return await fn(request, context)
                except grpc.aio.AbortError:
                    code = _code_name(context)
                    raise
                except asyncio.CancelledError:
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = "UNKNOWN"
                    raise
                finally:
                    series.observe(code, clock() - t0)
                    tracing.finish(token, span, None if code == "OK" else code)

            return run

        def wrap_stream(fn: Stream) -> Stream:
            async def run(request: object, context: Context) -> AsyncIterator[object]:
                token, span = tracing.start(name, _metadata_value(context, tracing.TRACEPARENT))
                t0 = clock()
                code = "OK"
                try:
                    async for item in fn(request, context):
                        yield item
                except grpc.aio.AbortError:
                    code = _code_name(context)
                    raise
                except (asyncio.CancelledError, GeneratorExit):
                    code = "CANCELLED"
                    raise
                except BaseException:
                    code = "UNKNOWN"
                    raise
                finally:
                    series.observe(code, clock() - t0)
                    tracing.finish(token, span, None if code == "OK" else code)

            return run

        return _wrap(handler, wrap_unary, wrap_stream)


class ErrorInterceptor(_MemoizedInterceptor):
    """NimbusError → its status code; anything else → INTERNAL with one logged traceback."""

    def _wrap_method(
        self, handler: grpc.RpcMethodHandler[_Req, _Resp], method: str
    ) -> grpc.RpcMethodHandler[_Req, _Resp]:
        def wrap_unary(fn: Unary) -> Unary:
            async def run(request: object, context: Context) -> object:
                try:
                    return await fn(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception as err:
                    await _abort_for(err, context, method)

            return run

        def wrap_stream(fn: Stream) -> Stream:
            async def run(request: object, context: Context) -> AsyncIterator[object]:
                try:
                    async for item in fn(request, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception as err:
                    await _abort_for(err, context, method)

            return run

        return _wrap(handler, wrap_unary, wrap_stream)


class AuthInterceptor(_MemoizedInterceptor):
    """Checks the bearer key of every call but health checks; the handler reads principal_var."""

    def __init__(
        self, authenticator: Authenticator, public_prefixes: Iterable[str] = ("/grpc.health.v1.",)
    ) -> None:
        super().__init__()
        self._auth = authenticator
        self._public = tuple(public_prefixes)

    def _wrap_method(
        self, handler: grpc.RpcMethodHandler[_Req, _Resp], method: str
    ) -> grpc.RpcMethodHandler[_Req, _Resp]:
        if method.startswith(self._public):
            return handler
        auth = self._auth

        def wrap_unary(fn: Unary) -> Unary:
            async def run(request: object, context: Context) -> object:
                principal_var.set(
                    await auth.authenticate(_metadata_value(context, "authorization"))
                )
                return await fn(request, context)

            return run

        def wrap_stream(fn: Stream) -> Stream:
            async def run(request: object, context: Context) -> AsyncIterator[object]:
                principal_var.set(
                    await auth.authenticate(_metadata_value(context, "authorization"))
                )
                async for item in fn(request, context):
                    yield item

            return run

        return _wrap(handler, wrap_unary, wrap_stream)


# -- mutual TLS: who may call (nimbus.common.mtls.CALLERS) ---------------------------------


def caller_of(context: Context) -> pki.Peer | None:
    values = context.auth_context().get("peer_spiffe_id") or ()
    for raw in values:
        peer = pki.parse_spiffe(raw.decode() if isinstance(raw, bytes) else str(raw))
        if peer is not None:
            return peer
    return None


class PeerCheckInterceptor(_MemoizedInterceptor):
    """Refuses a call unless the caller's certificate names a service the method is for
    (CALLERS). First in every server's chain, so nothing runs for a refused call."""

    def _wrap_method(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str
    ) -> grpc.RpcMethodHandler[Any, Any]:
        allowed = mtls.allowed_callers(method)

        async def check(context: Context) -> None:
            peer = caller_of(context)
            if peer is None:
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, "no cluster certificate names the caller"
                )
                return
            if mtls.ANY_PEER not in allowed and peer.service not in allowed:
                await context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{peer.service} may not call {method}",
                )

        def wrap_unary(fn: Unary) -> Unary:
            async def unary(request: object, context: Context) -> object:
                await check(context)
                return await fn(request, context)

            return unary

        def wrap_stream(fn: Stream) -> Stream:
            async def stream(request: object, context: Context) -> Any:
                await check(context)
                async for item in fn(request, context):
                    yield item

            return stream

        return _wrap(handler, wrap_unary, wrap_stream)
