"""Function instances on this node: create, invoke up to instance_concurrency
calls at a time, destroy.

An instance is a sandbox (boot.py) given one function version, with one persistent Unix stream to
the agent. Creating one takes a warm sandbox from the pool when there is one (else boots one while
the code is fetched) and loads the function into it. A call takes one of the instance's
instance_concurrency slots (1 by default), writes one INVOKE frame and waits for the reply that
names its request id; nothing on that path logs, hops threads or touches etcd. The slots live here,
on the instance's node, so however many invokers pick the same instance it never has more calls in
flight than its slots: a call beyond them waits first in, first out. The lifecycle is state.py's:
STARTING → IDLE ⇄ BUSY → DRAINING → GONE (BUSY while at least one call runs).

When a call kills its instance (timeout, crash, a fatal runtime error, or a cancelled call whose
late reply the shim would still send), the other calls in flight on it end at once with
Runtime.ExitError, as on Cloud Run and SCF.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from nimbus.common import tracing
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import (
    AlreadyExists,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from nimbus.common.logs import kv
from nimbus.common.model import InstanceRecord
from nimbus.nodeagent import spec as specs
from nimbus.nodeagent.boot import Booter, Sandbox
from nimbus.nodeagent.calls import call_instance
from nimbus.nodeagent.coldstart import CodeStore, SandboxSource, sandbox_with_code
from nimbus.nodeagent.policy import fits
from nimbus.nodeagent.protocol import InvokeEncoder
from nimbus.nodeagent.spec import InstanceInfo, InstanceSpec, InvokeResult
from nimbus.nodeagent.state import InstanceState, record_state, transition

log = logging.getLogger(__name__)

# How long a call may wait for a busy instance when the caller gave no deadline, beyond the timeout.
SLOT_SLACK_S = 5.0


class InstanceRecords(Protocol):
    async def put_instance(self, record: InstanceRecord) -> None: ...
    async def delete_instance(self, instance_id: str) -> None: ...


@dataclass(slots=True, eq=False)
class Instance:
    instance_id: str
    spec: InstanceSpec
    created_at: str
    last_used: float
    sandbox: Sandbox
    frames: InvokeEncoder
    state: InstanceState = InstanceState.STARTING
    init_duration_us: int = 0
    invoked: bool = False
    stopping: bool = False
    # A destroy waits for the calls queued before it;
    # calls that come after it find the instance gone.
    closing: bool = False
    # Slots taken (by calls, or by destroy taking them all), of spec.config.instance_concurrency.
    taken: int = 0
    # Calls waiting for a slot, first in first out; a freed slot passes straight to the first.
    slot_waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    # Request ids of the calls running.
    calls: set[str] = field(default_factory=set)

    def move(self, target: InstanceState) -> None:
        self.state = transition(self.state, target)


class InstanceManager:
    def __init__(
        self,
        *,
        node_id: str,
        node_address: str,
        booter: Booter,
        pool: SandboxSource,
        code: CodeStore,
        records: InstanceRecords,
        clock: Clock,
        memory_mb: int,
    ) -> None:
        self._node_id = node_id
        self._node_address = node_address
        self._booter = booter
        self._driver = booter.driver
        self._pool = pool
        self._code = code
        self._records = records
        self._clock = clock
        self._memory_mb = memory_mb
        self._instances: dict[str, Instance] = {}
        self._reserved_mb = 0
        self._inflight = 0
        self._no_inflight = asyncio.Event()
        self._no_inflight.set()
        self._draining = False

    # -- the NodeAgent API ---------------------------------------------------------------------

    async def create(self, spec: InstanceSpec) -> InstanceInfo:
        spec = specs.validate(spec)
        runtime = spec.config.runtime
        if not self._driver.supports(runtime):
            raise InvalidArgument(f"runtime {runtime!r} is not supported on node {self._node_id}")
        if self._draining:
            raise Unavailable(f"node {self._node_id} is shutting down")
        if not fits(self._reserved_mb, spec.config.memory_mb, self._memory_mb):
            raise Unavailable(
                f"node {self._node_id} has {self._memory_mb - self._reserved_mb} "
                f"MB free, needs {spec.config.memory_mb}"
            )
        self._reserved_mb += spec.config.memory_mb
        t0 = self._clock.monotonic()
        try:
            sb, code_dir, pooled = await sandbox_with_code(
                self._pool, self._booter, self._code, spec
            )
        except BaseException:
            self._reserved_mb -= spec.config.memory_mb
            raise
        inst = Instance(
            sb.sandbox_id,
            spec,
            iso(self._clock.now()),
            self._clock.monotonic(),
            sb,
            specs.invoke_encoder(spec),
        )
        self._instances[inst.instance_id] = inst
        try:
            t1 = self._clock.monotonic()
            with tracing.span("instance.init"):
                inst.init_duration_us = await self._booter.load(sb, spec, code_dir)
            inst.move(InstanceState.IDLE)
            t2 = self._clock.monotonic()
            # Both needed before the first call; neither needs the other.
            done = await asyncio.gather(
                self._booter.throttle(sb, spec.config.memory_mb),
                self._records.put_instance(self._record(inst)),
                return_exceptions=True,
            )
            for outcome in done:
                if isinstance(outcome, BaseException):
                    raise outcome
        except BaseException:
            # Cleanup must finish even when the caller went away (CancelledError).
            await asyncio.shield(self._stop(inst))
            raise
        ms = {"sandbox_ms": t1 - t0, "load_ms": t2 - t1, "record_ms": self._clock.monotonic() - t2}
        log.info(
            "instance ready",
            extra=kv(
                instance_id=inst.instance_id,
                function=spec.function,
                init_us=inst.init_duration_us,
                pooled=pooled,
                **{k: round(v * 1000, 2) for k, v in ms.items()},
            ),
        )
        return InstanceInfo(inst.instance_id, self._node_id, self._node_address, spec)

    async def invoke(
        self,
        instance_id: str,
        request_id: str,
        payload: bytes,
        wait_s: float | None = None,
        *,
        log_tail: bool = False,
    ) -> InvokeResult:
        inst = self._get(instance_id)
        request_id = request_id or str(uuid.uuid4())
        if self._draining:
            raise Unavailable(f"node {self._node_id} is shutting down")
        if inst.closing:
            raise NotFound(f"instance {instance_id} is being destroyed")
        if inst.taken < inst.spec.config.instance_concurrency and not inst.slot_waiters:
            inst.taken += 1
        else:
            # Every slot is taken: wait our turn, bounded by the caller's deadline.
            try:
                await self._wait_slot(
                    inst,
                    wait_s if wait_s is not None else inst.spec.config.timeout_s + SLOT_SLACK_S,
                )
            except TimeoutError:
                raise DeadlineExceeded(
                    f"instance {instance_id} stayed busy past the deadline"
                ) from None
        try:
            if inst.state is not InstanceState.IDLE and inst.state is not InstanceState.BUSY:
                raise NotFound(f"instance {instance_id} is {inst.state.lower()}")
            if request_id in inst.calls:
                # Replies are matched by request id (an async event redelivered while its first
                # attempt still runs here): the caller retries once the first attempt ended.
                raise AlreadyExists(
                    f"request {request_id} is already running on instance {instance_id}"
                )
            return await self._call(inst, request_id, payload, log_tail)
        finally:
            self._free_slot(inst)

    async def destroy(self, instance_id: str, wait_s: float | None = None) -> None:
        inst = self._instances.get(instance_id)
        if inst is None:
            # Already gone (stopped by a call, the reaper or a drain): destroying is done, and a
            # record left behind is removed so nobody keeps asking.
            await self._records.delete_instance(instance_id)
            return
        # Takes every slot through the FIFO: calls queued before us finish first.
        inst.closing = True
        held = 0
        try:
            async with asyncio.timeout(wait_s if wait_s is not None else SLOT_SLACK_S):
                for _ in range(inst.spec.config.instance_concurrency):
                    if inst.taken < inst.spec.config.instance_concurrency and not inst.slot_waiters:
                        inst.taken += 1
                    else:
                        await self._wait_slot(inst, None)
                    held += 1
        except TimeoutError:
            pass  # the running calls see the shim exit and answer Runtime.ExitError
        try:
            await self._stop(inst)
        finally:
            for _ in range(held):
                self._free_slot(inst)

    # -- lifecycle of the whole node -----------------------------------------------------------

    async def drain(self) -> None:
        """Refuses new work, marks instances DRAINING (in etcd too, so invokers look elsewhere),
        and waits for the calls in flight."""
        self._draining = True
        live = [
            i
            for i in self._instances.values()
            if i.state in (InstanceState.IDLE, InstanceState.BUSY)
        ]
        for inst in live:
            inst.move(InstanceState.DRAINING)
        results = await asyncio.gather(
            *(self._records.put_instance(self._record(i)) for i in live), return_exceptions=True
        )
        for inst, result in zip(live, results, strict=True):
            if isinstance(result, Exception):
                log.warning(
                    "cannot mark instance draining",
                    extra=kv(instance_id=inst.instance_id, error=str(result)),
                )
        await self._no_inflight.wait()

    async def close(self) -> None:
        """Stops every instance; their records go with the node's lease, revoked right after."""
        self._draining = True
        instances = list(self._instances.values())
        await asyncio.gather(
            *(self._stop(i, delete_record=False) for i in instances), return_exceptions=True
        )

    # -- what the reaper (reaper.py) sees ----------------------------------------------------------

    def states(self) -> dict[str, int]:
        """How many instances are in each state (the metrics read it when scraped)."""
        counts = dict.fromkeys(InstanceState, 0)
        for inst in list(self._instances.values()):
            counts[inst.state] += 1
        return {state.value: n for state, n in counts.items()}

    def idle_since(self) -> dict[str, float]:
        return {i.instance_id: i.last_used for i in self._instances.values() if self._idle(i)}

    def exited(self) -> list[str]:
        return [
            i.instance_id
            for i in self._instances.values()
            if self._idle(i) and self._driver.exit_code(i.sandbox.handle) is not None
        ]

    async def reap(self, instance_id: str, *, failed: bool = False) -> bool:
        inst = self._instances.get(instance_id)
        # Re-checked here: a call may have taken the instance since the reaper looked.
        if inst is None or not self._idle(inst):
            return False
        await self._stop(inst)
        return True

    def _idle(self, inst: Instance) -> bool:
        return inst.state is InstanceState.IDLE and inst.taken == 0

    # -- internals -----------------------------------------------------------------------------

    @staticmethod
    async def _wait_slot(inst: Instance, timeout_s: float | None) -> None:
        """Queues for a slot; returns holding it."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        inst.slot_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout_s):
                await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                InstanceManager._free_slot(inst)  # handed to us in the instant we gave up
            else:
                waiter.cancel()
            raise

    @staticmethod
    def _free_slot(inst: Instance) -> None:
        while inst.slot_waiters:
            waiter = inst.slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: `taken` stays
                return
        inst.taken -= 1

    def _get(self, instance_id: str) -> Instance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise NotFound(f"instance {instance_id} not found on node {self._node_id}")
        return inst

    async def _call(
        self, inst: Instance, request_id: str, payload: bytes, want_tail: bool
    ) -> InvokeResult:
        # While calls overlap, their output is nobody's
        # (logcapture.py); START/END/REPORT stay theirs.
        inst.sandbox.output.begin(request_id, specs.log_start(inst.spec, request_id))
        if not inst.calls:
            inst.move(InstanceState.BUSY)
        inst.calls.add(request_id)
        self._inflight += 1
        self._no_inflight.clear()
        try:
            with tracing.span("instance.call"):
                outcome = await call_instance(
                    inst.sandbox,
                    self._driver,
                    inst.spec,
                    request_id,
                    payload,
                    self._clock,
                    frames=inst.frames,
                    cold=not inst.invoked,
                    init_us=inst.init_duration_us,
                )
        except asyncio.CancelledError:
            # The shim still runs this call and would send a reply nobody waits for: kill it.
            self._abort_others(inst, request_id, "was cancelled")
            await asyncio.shield(self._stop(inst))
            raise
        finally:
            inst.calls.discard(request_id)
            self._inflight -= 1
            if self._inflight == 0:
                self._no_inflight.set()
        inst.invoked = True
        if outcome.fatal:
            self._abort_others(
                inst, request_id, f"ended it ({outcome.note or 'fatal runtime error'})"
            )
            await self._stop(inst)
        elif not inst.calls and inst.state is InstanceState.BUSY:
            inst.move(InstanceState.IDLE)
        inst.last_used = self._clock.monotonic()
        result = outcome.result
        tail = inst.sandbox.output.end(
            specs.log_end(inst.spec, request_id, result, outcome.note), tail=want_tail
        )
        return dataclasses.replace(result, log_tail=tail) if want_tail else result

    @staticmethod
    def _abort_others(inst: Instance, request_id: str, why: str) -> None:
        if any(other != request_id for other in inst.calls):
            inst.sandbox.conn.abort(f"the instance was stopped because request {request_id} {why}")

    async def _stop(self, inst: Instance, *, delete_record: bool = True) -> None:
        """Idempotent: the first caller stops the sandbox; later callers return at once."""
        if inst.stopping:
            return
        inst.stopping = True
        had_record = record_state(inst.state) is not None
        if inst.state is not InstanceState.DRAINING:
            inst.move(InstanceState.DRAINING)
        self._instances.pop(inst.instance_id, None)
        self._reserved_mb -= inst.spec.config.memory_mb
        try:
            # The record goes first: invokers stop routing to it at once, and a sandbox that is
            # slow to stop cannot leave a record nothing on this node answers for.
            if had_record and delete_record:
                await self._records.delete_instance(inst.instance_id)
            await self._booter.discard(inst.sandbox)
        finally:
            self._code.release(inst.spec.code_sha256)
            inst.move(InstanceState.GONE)

    def _record(self, inst: Instance) -> InstanceRecord:
        record = specs.instance_record(
            inst.instance_id, self._node_id, self._node_address, inst.spec, inst.created_at
        )
        stored = record_state(inst.state)
        return dataclasses.replace(record, state=stored.value) if stored is not None else record
