"""The sync data path: resolve the function, take an instance, run the call, give it back."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import logs, tracing
from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, SystemClock
from nimbus.common.errors import (
    FunctionInitFailed,
    InvalidArgument,
    NotFound,
    Throttled,
    Unavailable,
)
from nimbus.common.model import LATEST, AliasRecord, FunctionRecord, InstanceRecord, VersionRecord
from nimbus.common.validation import check_name
from nimbus.invoker import telemetry
from nimbus.invoker.sync.dispatcher import Dispatcher
from nimbus.invoker.sync.limits import ConcurrencyLimiter
from nimbus.invoker.sync.target import Target, latest, resolve

# An instance the node says is gone (drained by the autoscaler, reaped when idle) never ran the
# call, so the call moves on to another. A scale-down destroys a batch of instances at once and the
# invokers keep handing them out until each record's deletion reaches them through the watch (tens
# to hundreds of ms on a busy node), so a call may meet many gone instances in a row. Each one is
# dropped from the pool, so the call walks past them all and, once none is left, waits for a new
# instance like any other call; only its deadline ends the walk. Instances started for the call
# itself being gone too ends it after this many: each costs a start, and a node that keeps losing
# what it just started must not be asked for more until the deadline.
# A node that stops answering mid-call is a 503 at once: the call may have run.
_FRESH_GONE_LIMIT = 3
# A concurrency slot outlives its call by this much before it lapses on its own.
_SLOT_SLACK_S = 10.0
# Targets of $LATEST kept per function record (by identity), before the cache starts over.
_LATEST_TARGETS = 4096

# Request ids are random UUIDs (version 4), drawn from a generator seeded from os.urandom rather
# than os.urandom per id as uuid.uuid4() does (~7 µs against ~1 µs); the child of a fork reseeds it.
_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """A random UUID4 in its canonical text form, as str(uuid.uuid4())."""
    h = f"{_ids.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True, slots=True)
class InvokeResult:
    request_id: str
    payload: bytes
    function_error: str
    duration_us: int
    billed_ms: int
    cold_start: bool
    executed_version: str
    # The runtime's import of the handler, on the call that started the instance; else 0.
    init_duration_us: int = 0
    # The last 4 KB of the call's log, when the caller asked for it.
    log_tail: bytes = b""


class FunctionLookup(Protocol):
    async def get(self, namespace: str, name: str) -> FunctionRecord | None: ...
    async def prefetch(self, namespace: str, name: str, qualifier: str) -> None: ...
    def version_of(self, namespace: str, name: str) -> Callable[[str], VersionRecord | None]: ...
    def alias_of(self, namespace: str, name: str) -> Callable[[str], AliasRecord | None]: ...


class InstanceCaller(Protocol):
    async def invoke(
        self,
        instance: InstanceRecord,
        request_id: str,
        payload: bytes,
        timeout_s: float,
        log_tail: bool = False,
    ) -> InvokeResult: ...


class ThrottleSink(Protocol):
    def record(self, namespace: str, function: str) -> None: ...


class Invoker:
    def __init__(
        self,
        functions: FunctionLookup,
        dispatcher: Dispatcher,
        caller: InstanceCaller,
        limiter: ConcurrencyLimiter,
        draw: Callable[[], float],
        throttles: ThrottleSink | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._functions = functions
        self._dispatcher = dispatcher
        self._caller = caller
        self._limiter = limiter
        self._draw = draw
        self._throttles = throttles
        self._clock = clock or SystemClock()
        self._releases: set[asyncio.Task[None]] = set()
        self._latest: dict[int, tuple[FunctionRecord, Target]] = {}

    async def _target(self, record: FunctionRecord, qualifier: str) -> Target:
        if not qualifier or qualifier == LATEST:
            # The usual call: its Target made once per record (records are replaced, never changed).
            cached = self._latest.get(id(record))
            if cached is not None and cached[0] is record:
                return cached[1]
            if len(self._latest) >= _LATEST_TARGETS:
                self._latest.clear()
            target = latest(record)
            self._latest[id(record)] = (record, target)
            return target
        ns, name = record.namespace, record.name

        def attempt() -> Target:
            return resolve(
                record,
                qualifier,
                self._functions.version_of(ns, name),
                self._functions.alias_of(ns, name),
                self._draw(),
            )

        try:
            return attempt()
        except NotFound:
            # Published or aliased a moment ago: read what the watch has not delivered yet.
            await self._functions.prefetch(ns, name, qualifier)
            alias = self._functions.alias_of(ns, name)(qualifier)
            if alias is not None:
                for number in (alias.version, alias.routing_version):
                    if number.isdigit():
                        await self._functions.prefetch(ns, name, number)
            return attempt()

    async def invoke(
        self,
        who: Principal,
        name: str,
        qualifier: str,
        payload: bytes,
        deadline_s: float,
        log_tail: bool = False,
    ) -> InvokeResult:
        check_name(name)
        payload = check_event(payload)
        record = await self._functions.get(who.namespace, name)
        if record is None:
            raise NotFound(f"function {name!r} not found")
        target = await self._target(record, qualifier)
        request_id = new_request_id()
        logs.bind_request(request_id, target.namespace, target.function)
        if tracing.exporting():
            span = tracing.current_span()
            if span.is_recording():
                span.set_attributes(
                    {
                        "nimbus.namespace": target.namespace,
                        "nimbus.function": target.function,
                        "nimbus.version": target.version,
                        "nimbus.request_id": request_id,
                    }
                )
        series = telemetry.function_series(target.namespace, target.function, target.version)
        try:
            if self._limiter.applies(target.config.max_concurrency, target.namespace):
                result = await self._limited(
                    target, request_id, payload, deadline_s, log_tail, series
                )
            else:
                # The instance enforces timeout_s itself; this bound only catches a node that
                # stops answering.
                result = await self._run(
                    target,
                    request_id,
                    payload,
                    deadline_s,
                    target.config.timeout_s + 5.0,
                    log_tail,
                    series,
                )
        except Throttled:
            series.refused()
            # No node ran the call, so no REPORT counts it: the function's per-minute metrics
            # learn it here.
            if self._throttles is not None:
                self._throttles.record(who.namespace, name)
            raise
        except Exception:
            series.failed()
            raise
        series.completed(
            result.function_error, result.duration_us, result.cold_start, result.init_duration_us
        )
        return result

    async def _limited(
        self,
        target: Target,
        request_id: str,
        payload: bytes,
        deadline_s: float,
        log_tail: bool,
        series: telemetry.FunctionSeries,
    ) -> InvokeResult:
        # The instance enforces timeout_s itself; this bound only catches a node that stops
        # answering.
        call_timeout_s = target.config.timeout_s + 5.0
        slot = await self._limiter.acquire(
            target.namespace,
            target.function,
            target.config.max_concurrency,
            call_timeout_s + _SLOT_SLACK_S,
        )
        try:
            return await self._run(
                target, request_id, payload, deadline_s, call_timeout_s, log_tail, series
            )
        finally:
            # Off the reply's path: the caller need not wait for Redis.
            task = asyncio.create_task(self._limiter.release(slot))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)

    async def _run(
        self,
        target: Target,
        request_id: str,
        payload: bytes,
        deadline_s: float,
        call_timeout_s: float,
        log_tail: bool,
        series: telemetry.FunctionSeries,
    ) -> InvokeResult:
        give_up_at = self._clock.monotonic() + deadline_s
        fresh_gone = 0
        while True:
            # The queue wait, and on a cold path the instance start under it.
            with tracing.span("invoker.dispatch"):
                instance = self._dispatcher.try_acquire(target)
                cold = False
                if instance is None:
                    try:
                        grant = await self._dispatcher.acquire(
                            target, give_up_at - self._clock.monotonic()
                        )
                    except FunctionInitFailed as err:
                        # As Lambda does: code that cannot load is the function's error, not
                        # the platform's.
                        return init_failure_result(request_id, target.version, err)
                    instance, cold = grant.instance, grant.cold
            series.concurrent.inc()
            try:
                result = await self._caller.invoke(
                    instance, request_id, payload, call_timeout_s, log_tail
                )
            except NotFound as err:
                self._dispatcher.forget(instance)
                if cold:
                    fresh_gone += 1
                if fresh_gone >= _FRESH_GONE_LIMIT or self._clock.monotonic() >= give_up_at:
                    raise Unavailable(
                        f"function {target.function!r} could not be run: {err.message}"
                    ) from None
                continue
            except Unavailable:
                # The node is gone or going: stop routing to any of its instances before its
                # lease lapses, and fail this call now rather than hang.
                self._dispatcher.forget_node(instance.node_id)
                raise
            except BaseException:
                self._dispatcher.release(instance)
                raise
            finally:
                series.concurrent.dec()
            self._dispatcher.release(instance)
            # Cold means this call waited for an instance to start, as Lambda counts it: an
            # instance kept warm by min_instances serves its first call warm.
            # (Rebuilt only when it differs: most warm calls keep the node's answer as it is.)
            return (
                result
                if result.cold_start == cold
                else dataclasses.replace(result, cold_start=cold)
            )


def init_failure_result(request_id: str, version: str, err: FunctionInitFailed) -> InvokeResult:
    payload = {"errorType": err.error_type, "errorMessage": err.error_message, "stackTrace": []}
    return InvokeResult(
        request_id=request_id,
        payload=json.dumps(payload).encode(),
        function_error="Unhandled",
        duration_us=0,
        billed_ms=0,
        cold_start=True,
        executed_version=version,
    )


def check_event(payload: bytes) -> bytes:
    """The event must be JSON whatever content type the client sent (curl -d sends a form type);
    no event at all is {} as in Lambda."""
    if not payload.strip():
        return b"{}"
    try:
        json.loads(payload)
    except ValueError as err:
        raise InvalidArgument(f"body: the event is not valid JSON: {err}") from None
    except RecursionError:
        # The C decoder stops at the interpreter's recursion limit (~1,000 levels).
        raise InvalidArgument(
            f"body: the event is nested too deeply (over {sys.getrecursionlimit()} levels)"
        ) from None
    return payload
