"""Function instances on this node: create, invoke one call at a time, destroy.

Each instance is a sandboxed runtime shim with one persistent Unix stream to the agent. A call
holds the instance's lock, writes one INVOKE frame and reads one reply; nothing on that path logs,
hops threads or touches etcd, so a warm call costs a few tens of microseconds here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from nimbus.common.clock import Clock, iso
from nimbus.common.errors import DeadlineExceeded, FunctionInitFailed, InvalidArgument, NotFound, Unavailable
from nimbus.common.logs import kv
from nimbus.common.model import InstanceRecord
from nimbus.common.model import InstanceState as RecordState
from nimbus.nodeagent import spec as specs
from nimbus.nodeagent.layout import NodeLayout
from nimbus.nodeagent.policy import billed_ms, fits
from nimbus.nodeagent.protocol import Kind, ProtocolError, encode
from nimbus.nodeagent.sandbox import SandboxDriver, SandboxHandle, SandboxSpec
from nimbus.nodeagent.shim import InitError, ShimConnection, describe_exit, listen
from nimbus.nodeagent.spec import InstanceInfo, InstanceSpec, InvokeResult
from nimbus.nodeagent.state import InstanceState, record_state, transition

log = logging.getLogger(__name__)

# Time an instance gets to start and import its handler, on top of the function's timeout.
START_BUDGET_S = 10.0
# How long a call may wait for a busy instance when the caller gave no deadline, beyond the timeout.
LOCK_SLACK_S = 5.0


class CodeStore(Protocol):
    async def ensure(self, sha256: str) -> Path: ...


class InstanceRecords(Protocol):
    async def put_instance(self, record: InstanceRecord) -> None: ...
    async def delete_instance(self, instance_id: str) -> None: ...


@dataclass(slots=True, eq=False)
class Instance:
    instance_id: str
    spec: InstanceSpec
    created_at: str
    last_used: float
    state: InstanceState = InstanceState.STARTING
    handle: SandboxHandle | None = None
    conn: ShimConnection | None = None
    init_duration_us: int = 0
    invoked: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def move(self, target: InstanceState) -> None:
        self.state = transition(self.state, target)


class InstanceManager:
    def __init__(
        self,
        *,
        node_id: str,
        node_address: str,
        layout: NodeLayout,
        driver: SandboxDriver,
        code: CodeStore,
        records: InstanceRecords,
        clock: Clock,
        memory_mb: int,
    ) -> None:
        self._node_id = node_id
        self._node_address = node_address
        self._layout = layout
        self._driver = driver
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
        if not self._driver.supports(spec.config.runtime):
            raise InvalidArgument(f"runtime {spec.config.runtime!r} is not supported on node {self._node_id}")
        if self._draining:
            raise Unavailable(f"node {self._node_id} is shutting down")
        if not fits(self._reserved_mb, spec.config.memory_mb, self._memory_mb):
            raise Unavailable(
                f"node {self._node_id} has {self._memory_mb - self._reserved_mb} MB free, needs {spec.config.memory_mb}"
            )
        inst = Instance(secrets.token_hex(6), spec, iso(self._clock.now()), self._clock.monotonic())
        self._instances[inst.instance_id] = inst
        self._reserved_mb += spec.config.memory_mb
        try:
            code_dir = await self._code.ensure(spec.code_sha256)
            await self._start(inst, code_dir)
            inst.move(InstanceState.READY)
            await self._records.put_instance(self._record(inst))
        except BaseException:
            # Cleanup must finish even when the caller went away (CancelledError).
            await asyncio.shield(self._stop(inst, failed=True))
            raise
        log.info(
            "instance ready",
            extra=kv(instance_id=inst.instance_id, function=spec.function, init_us=inst.init_duration_us),
        )
        return InstanceInfo(inst.instance_id, self._node_id, self._node_address, spec)

    async def invoke(
        self, instance_id: str, request_id: str, payload: bytes, wait_s: float | None = None
    ) -> InvokeResult:
        inst = self._get(instance_id)
        request_id = request_id or str(uuid.uuid4())
        if self._draining:
            raise Unavailable(f"node {self._node_id} is shutting down")
        if inst.lock.locked():
            # A call is running: wait our turn, bounded by the caller's deadline.
            try:
                async with asyncio.timeout(wait_s if wait_s is not None else inst.spec.config.timeout_s + LOCK_SLACK_S):
                    await inst.lock.acquire()
            except TimeoutError:
                raise DeadlineExceeded(f"instance {instance_id} stayed busy past the deadline") from None
        else:
            await inst.lock.acquire()
        try:
            if inst.state is not InstanceState.READY:
                raise NotFound(f"instance {instance_id} is {inst.state.lower()}")
            return await self._call(inst, request_id, payload)
        finally:
            inst.lock.release()

    async def destroy(self, instance_id: str, wait_s: float | None = None) -> None:
        inst = self._get(instance_id)
        # The lock is FIFO: calls queued before us finish, calls after us find the instance gone.
        try:
            async with asyncio.timeout(wait_s if wait_s is not None else LOCK_SLACK_S):
                async with inst.lock:
                    await self._stop(inst)
        except TimeoutError:
            await self._stop(inst)  # the running call sees the shim exit and answers Runtime.ExitError

    # -- lifecycle of the whole node -----------------------------------------------------------

    async def drain(self) -> None:
        """Refuses new work, marks records DRAINING so invokers look elsewhere, waits for calls."""
        self._draining = True
        live = [i for i in self._instances.values() if record_state(i.state) is not None]
        results = await asyncio.gather(
            *(
                self._records.put_instance(dataclasses.replace(self._record(i), state=RecordState.DRAINING.value))
                for i in live
            ),
            return_exceptions=True,
        )
        for inst, result in zip(live, results, strict=True):
            if isinstance(result, Exception):
                log.warning("cannot mark instance draining", extra=kv(instance_id=inst.instance_id, error=str(result)))
        await self._no_inflight.wait()

    async def close(self) -> None:
        """Stops every instance; their records go with the node's lease, revoked right after."""
        self._draining = True
        instances = list(self._instances.values())
        await asyncio.gather(*(self._stop(i, delete_record=False) for i in instances), return_exceptions=True)

    # -- what the reaper (reaper.py) sees ----------------------------------------------------------

    def idle_since(self) -> dict[str, float]:
        return {i.instance_id: i.last_used for i in self._instances.values() if self._idle(i)}

    def exited(self) -> list[str]:
        return [
            i.instance_id
            for i in self._instances.values()
            if self._idle(i) and i.handle is not None and self._driver.exit_code(i.handle) is not None
        ]

    async def reap(self, instance_id: str, *, failed: bool = False) -> bool:
        inst = self._instances.get(instance_id)
        # Re-checked here: a call may have taken the instance since the reaper looked.
        if inst is None or not self._idle(inst):
            return False
        await self._stop(inst, failed=failed)
        return True

    def _idle(self, inst: Instance) -> bool:
        return inst.state is InstanceState.READY and not inst.lock.locked()

    # -- internals -----------------------------------------------------------------------------

    def _get(self, instance_id: str) -> Instance:
        inst = self._instances.get(instance_id)
        if inst is None:
            raise NotFound(f"instance {instance_id} not found on node {self._node_id}")
        return inst

    async def _start(self, inst: Instance, code_dir: Path) -> None:
        spec = inst.spec
        env, log_path = specs.instance_env(spec), self._layout.log_path(inst.instance_id)
        sandbox = SandboxSpec(inst.instance_id, spec.config.runtime, spec.config.memory_mb, env, log_path)
        socket_path = self._layout.socket_path(inst.instance_id)
        listener = listen(socket_path)
        budget = START_BUDGET_S + spec.config.timeout_s
        try:
            inst.handle = await self._driver.start(sandbox, code_dir, socket_path)
            async with asyncio.timeout(budget):
                inst.conn = await ShimConnection.accept(listener, self._driver.wait(inst.handle))
                inst.init_duration_us = await inst.conn.handshake()
        except TimeoutError:
            raise FunctionInitFailed(
                "Runtime.InitTimeout", f"the handler did not load within {budget:.0f} s"
            ) from None
        except InitError as err:
            raise FunctionInitFailed(err.error_type, err.message) from None
        except ProtocolError as err:
            raise Unavailable(f"instance runtime misbehaved during init: {err}") from None
        finally:
            listener.close()
            socket_path.unlink(missing_ok=True)

    async def _call(self, inst: Instance, request_id: str, payload: bytes) -> InvokeResult:
        assert inst.conn is not None and inst.handle is not None
        cfg = inst.spec.config
        cold = not inst.invoked
        inst.invoked = True
        init_us = inst.init_duration_us if cold else 0
        header = specs.invoke_header(inst.spec, request_id, self._clock.now())
        inst.move(InstanceState.BUSY)
        self._inflight += 1
        self._no_inflight.clear()
        started = self._clock.monotonic()
        try:
            async with asyncio.timeout(cfg.timeout_s):
                reply = await inst.conn.call(encode(Kind.INVOKE, header, payload))
            if reply.kind not in (Kind.RESULT, Kind.ERROR) or reply.header.get("request_id") != request_id:
                raise ProtocolError(f"unexpected {reply.kind} for request {request_id}")
        except TimeoutError:
            await self._stop(inst, failed=True)
            return specs.timeout_result(cfg.timeout_s, cold, init_us)
        except (asyncio.IncompleteReadError, ConnectionError, ProtocolError):
            elapsed_us = int((self._clock.monotonic() - started) * 1_000_000)
            try:
                async with asyncio.timeout(1.0):
                    exit_text = describe_exit(await self._driver.wait(inst.handle))
            except TimeoutError:
                exit_text = "protocol error"
            await self._stop(inst, failed=True)
            return specs.exit_result(request_id, exit_text, elapsed_us, cold, init_us)
        except asyncio.CancelledError:
            # The shim still runs this call and its late reply would answer the next one: kill it.
            await asyncio.shield(self._stop(inst, failed=True))
            raise
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._no_inflight.set()
        inst.move(InstanceState.READY)
        inst.last_used = self._clock.monotonic()
        duration_us = int(reply.header.get("duration_us", 0))
        error = "" if reply.kind is Kind.RESULT else "Unhandled"
        return InvokeResult(reply.body, error, duration_us, billed_ms(duration_us), cold, init_us)

    async def _stop(self, inst: Instance, *, failed: bool = False, delete_record: bool = True) -> None:
        """Idempotent: the first caller stops the sandbox; later callers return at once."""
        if inst.state in (InstanceState.STOPPING, InstanceState.STOPPED):
            return
        had_record = record_state(inst.state) is not None
        if failed and inst.state is not InstanceState.FAILED:
            inst.move(InstanceState.FAILED)
        inst.move(InstanceState.STOPPING)
        self._instances.pop(inst.instance_id, None)
        self._reserved_mb -= inst.spec.config.memory_mb
        if inst.conn is not None:
            inst.conn.close()
        try:
            if inst.handle is not None:
                await self._driver.stop(inst.handle)
            if had_record and delete_record:
                await self._records.delete_instance(inst.instance_id)
        finally:
            inst.move(InstanceState.STOPPED)

    def _record(self, inst: Instance) -> InstanceRecord:
        return specs.instance_record(inst.instance_id, self._node_id, self._node_address, inst.spec, inst.created_at)
