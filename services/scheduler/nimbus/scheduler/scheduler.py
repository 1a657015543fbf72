"""The scheduler core: places instances on nodes and removes the ones that should not exist."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from nimbus.common.clock import Clock, iso
from nimbus.common.errors import NimbusError, Unavailable
from nimbus.common.loops import loop_run
from nimbus.common.model import (
    LATEST,
    FunctionRecord,
    InstanceRecord,
    NodeRecord,
    VersionRecord,
    load_key,
)
from nimbus.scheduler.placement import place
from nimbus.scheduler.reconcile import stale_instances
from nimbus.scheduler.scaler import ScaleTarget

log = logging.getLogger(__name__)

# The longest function timeout plus slack: the node finishes the call in flight first.
DESTROY_TIMEOUT_S = 900 + 30


@dataclass(frozen=True, slots=True)
class Placed:
    instance_id: str
    node_id: str
    node_address: str


class NodeClient(Protocol):
    async def create_instance(self, address: str, spec: object, timeout_s: float) -> Placed: ...
    async def destroy_instance(self, address: str, instance_id: str, timeout_s: float) -> None: ...


class FunctionReader(Protocol):
    async def get(self, namespace: str, name: str) -> FunctionRecord | None: ...
    async def version_exists(self, namespace: str, name: str, version: str) -> bool: ...


class Scheduler:
    def __init__(
        self,
        nodes: Mapping[bytes, NodeRecord],
        instances: Mapping[bytes, InstanceRecord],
        functions: Mapping[bytes, FunctionRecord],
        versions: Mapping[bytes, VersionRecord],
        function_reader: FunctionReader,
        node_client: NodeClient,
        clock: Clock,
        start_timeout_s: float,
        spec_for: Callable[[ScaleTarget], object],
    ) -> None:
        self._nodes = nodes
        self._instances = instances
        self._functions = functions
        self._versions = versions
        self._reader = function_reader
        self._client = node_client
        self._clock = clock
        self._start_timeout_s = start_timeout_s
        self._spec_for = spec_for
        # Starts still under way, which have no instance record yet, as (node, namespace,
        # function) → memory: placement counts them like instances.
        self._reserved: Counter[tuple[str, str, str]] = Counter()
        # Destroys wait for the instance's call in flight (up to the longest timeout), so they run
        # as tasks beside the loop; an id is here until its destroy returns.
        self._destroying: dict[str, asyncio.Task[None]] = {}
        self._starting: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_reconcile_s = 0.0

    async def request_instance(
        self,
        namespace: str,
        function: str,
        memory_mb: int,
        spec: object,
        code_sha256: str = "",
        runtime: str = "",
    ) -> Placed:
        now = iso(self._clock.now())
        reservations = [_reservation(*key, mb, now) for key, mb in self._reserved.items() if mb > 0]
        node_id = place(
            memory_mb,
            (namespace, function),
            self._nodes.values(),
            [*self._instances.values(), *reservations],
            code_sha256,
            runtime,
        )
        if node_id is None:
            raise Unavailable(f"no node has {memory_mb} MB free for function {function!r}")
        node = next(n for n in self._nodes.values() if n.node_id == node_id)
        key = (node_id, namespace, function)
        self._reserved[key] += memory_mb
        try:
            return await self._client.create_instance(node.address, spec, self._start_timeout_s)
        finally:
            self._reserved[key] -= memory_mb

    # -- the autoscaler's actuator ------------------------------------------------------------

    def start(self, target: ScaleTarget) -> None:
        key = load_key(target.namespace, target.function, target.version, target.revision)
        self._starting[key] += 1

        async def create() -> None:
            try:
                await self.request_instance(
                    target.namespace,
                    target.function,
                    target.config.memory_mb,
                    self._spec_for(target),
                    target.code_sha256,
                    target.config.runtime,
                )
            except NimbusError as err:
                log.warning(
                    "warm instance not started",
                    extra={"fields": {"function": target.function, "error": err.message}},
                )
            finally:
                self._starting[key] -= 1

        self._track(asyncio.create_task(create()))

    def starting(self, key: str) -> int:
        return self._starting[key]

    def drain(self, instance: InstanceRecord) -> None:
        if instance.instance_id in self._destroying:
            return
        task = asyncio.create_task(self._destroy(instance))
        instance_id = instance.instance_id
        self._destroying[instance_id] = task
        task.add_done_callback(lambda _t: self._destroying.pop(instance_id, None))

    def draining(self, instance_id: str) -> bool:
        return instance_id in self._destroying

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def reconcile_once(self) -> int:
        """Starts destroying stale instances; returns how many destroys it started."""
        started = self._clock.monotonic()
        by_name = {(f.namespace, f.name): f for f in self._functions.values()}
        versions = {(v.namespace, v.name, v.version) for v in self._versions.values()}
        begun = 0
        for instance in stale_instances(list(self._instances.values()), by_name, versions):
            if instance.instance_id in self._destroying:
                continue
            # The caches may lag a function created or published a moment ago: confirm first.
            if (instance.namespace, instance.function) not in by_name:
                if await self._reader.get(instance.namespace, instance.function) is not None:
                    continue
            elif (
                instance.version != LATEST
                and (instance.namespace, instance.function, instance.version) not in versions
            ):
                if await self._reader.version_exists(
                    instance.namespace, instance.function, instance.version
                ):
                    continue
            self.drain(instance)
            begun += 1
        self.last_reconcile_s = self._clock.monotonic() - started
        return begun

    async def _destroy(self, instance: InstanceRecord) -> None:
        try:
            await self._client.destroy_instance(
                instance.node_address, instance.instance_id, DESTROY_TIMEOUT_S
            )
        except NimbusError as err:
            log.warning(
                "destroy failed",
                extra={"fields": {"instance": instance.instance_id, "error": err.message}},
            )

    async def close(self) -> None:
        tasks = [*self._destroying.values(), *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def reconcile_forever(self, period_s: float, is_leader: Callable[[], bool]) -> None:
        while True:
            if is_leader():
                try:
                    with loop_run("reconciler"):
                        await self.reconcile_once()
                except Exception:
                    log.exception("reconcile step failed")
            await self._clock.sleep(period_s)


def _reservation(
    node_id: str, namespace: str, function: str, memory_mb: int, created_at: str
) -> InstanceRecord:
    return InstanceRecord(
        instance_id="reserved",
        node_id=node_id,
        node_address="",
        namespace=namespace,
        function=function,
        version="",
        code_sha256="",
        function_revision=0,
        memory_mb=memory_mb,
        state="STARTING",
        created_at=created_at,
    )
