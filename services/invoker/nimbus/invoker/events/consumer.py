"""The async data path's back half: pull events from the namespaces' JetStream consumers and run
them through the same Invoker core as sync calls.

Lanes (issue 15.4): each namespace with events has a consumer of its own and, in each invoker, a
standing pull on it; free slots go to the namespaces fairly (fairness.py), so one namespace's
backlog, however deep or throttled, never delays another's events by more than the first free
slot. The namespaces with events come from the stream every SCAN_S, and at once from this
replica's own accepts (wake); a lane with nothing to do for LANE_IDLE_S is closed.

Per event: invoke, sending in-progress acks every third of ack_wait so a long call is never
redelivered while it runs → decide (retry.py) → record the outcome with the run counted
(attempts + 1) → ack, nak with a delay, or dead-letter then ack. A run that lasts a moment is
marked RUNNING meanwhile (and counted there). A redelivered event is marked RUNNING before it runs,
and one whose record already says it finished (its ack was lost, or an invoker died between
recording and acking) is acked without running again. While record writes fail, every event
waits for its RUNNING mark (no record, no run). At most NIMBUS_ASYNC_WORKERS events run at once per
invoker, and of a function with max_concurrency M at most (M-1)//2 (async_cap), so async work never
takes the whole of a function or starves sync calls, which wait in the same FIFO queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from nimbus.common import subjects, tracing
from nimbus.common.auth import Principal
from nimbus.common.clock import Clock, iso
from nimbus.common.errors import InvalidArgument, NimbusError, NotFound, Throttled, Unavailable
from nimbus.common.eventconfig import Destination, EventConfig
from nimbus.invoker import telemetry
from nimbus.invoker.events import envelope, fairness
from nimbus.invoker.events.config import EventsConfig
from nimbus.invoker.events.invocations import AsyncInvocations, dead_letter_of
from nimbus.invoker.events.records import (
    TERMINAL,
    EventRef,
    InvocationStatus,
    Move,
    RecordStore,
    error_json,
)
from nimbus.invoker.events.retry import (
    Action,
    Decision,
    Outcome,
    Reason,
    RetryPolicy,
    decide,
    expired,
    requeue_delay,
)
from nimbus.invoker.sync.invoke import FunctionLookup, InvokeResult

log = logging.getLogger(__name__)

S = InvocationStatus
_RECORD_TRIES = 5
# The pull loop wakes at least this often with nothing to do (to notice a reconnect).
_PULL_WAIT_S = 1.0
# How often the stream is asked which namespaces have events.
SCAN_S = 1.0
# A lane with nothing at hand or running, whose namespace had no events at the last scan, is
# closed after this long without an event.
LANE_IDLE_S = 5.0
# A lane that had an event arrive this recently is busy (asks for its share, not one).
_BUSY_S = 0.5
# Acquire wait of an async run: the dispatcher's queue wait applies (it is the smaller).
_INVOKE_DEADLINE_S = 900.0
_CAP_RETRY_S = 0.5
# A first delivery's run is marked RUNNING in its record once it has lasted this long.
_MARK_RUNNING_AFTER_S = 0.5


class Delivery(Protocol):
    data: bytes
    headers: dict[str, str]
    seq: int
    deliveries: int

    async def ack(self) -> None: ...
    async def nak(self, delay_s: float = 0.0) -> None: ...
    async def in_progress(self) -> None: ...
    async def term(self) -> None: ...


class Subscription(Protocol):
    async def ask(self, room: int, batch_min: int = 1, busy: bool = False) -> float | None: ...
    @property
    def held(self) -> Sequence[Delivery]: ...
    def take(self) -> Delivery | None: ...
    def take_all(self) -> Sequence[Delivery]: ...
    async def close(self) -> None: ...


class EventSource(Protocol):
    generation: int

    async def wait_ready(self, timeout_s: float) -> None: ...
    async def namespaces_with_events(self) -> set[str]: ...
    async def subscribe_events(
        self, namespace: str, on_arrival: Callable[[], None] | None = None
    ) -> Subscription: ...
    async def publish(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str],
        msg_id: str,
        timeout_s: float = ...,
    ) -> object: ...
    async def publish_core(
        self, subject: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None: ...


class Runner(Protocol):
    async def invoke(
        self, who: Principal, name: str, qualifier: str, payload: bytes, deadline_s: float
    ) -> InvokeResult: ...


@dataclass(slots=True)
class _Mark:
    """Whether this run is counted in the record yet (by a RUNNING mark), and its attempt number."""

    counted: bool
    attempts: int
    writing: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _Lane:
    """One namespace's standing pull in this invoker."""

    sub: Subscription
    last_event: float
    # Deliveries at hand (arrived, not started) → when this invoker last kept each alive.
    touched: dict[int, float]


@dataclass(frozen=True, slots=True)
class Plan:
    policy: RetryPolicy
    on_success: Destination
    on_failure: Destination


class EventConsumer:
    def __init__(
        self,
        source: EventSource,
        records: RecordStore,
        runner: Runner,
        functions: FunctionLookup,
        submitter: AsyncInvocations,
        event_config: Callable[[str, str], EventConfig | None],
        cfg: EventsConfig,
        clock: Clock,
        draw: Callable[[], float],
    ) -> None:
        self._source = source
        self._records = records
        self._runner = runner
        self._functions = functions
        self._submitter = submitter
        self._event_config = event_config
        self._cfg = cfg
        self._clock = clock
        self._draw = draw
        self._tasks: set[asyncio.Task[None]] = set()
        self._inflight: Counter[tuple[str, str]] = Counter()
        # Per namespace: its lane, its events running here, and which started least recently
        # (dict order).
        self._lanes: dict[str, _Lane] = {}
        self._running: Counter[str] = Counter()
        self._order: dict[str, None] = {}
        self._woken: set[str] = set()
        self._signal = asyncio.Event()
        self._working: dict[int, tuple[Delivery, float]] = {}
        self._stopping = False
        # The last record write failed (or none was made yet): runs wait for a RUNNING mark until
        # one succeeds.
        self._records_down = True
        # Free room is asked for in batches of this many (or after a moment), not one by one.
        self._batch_min = max(1, cfg.workers // 4)

    # -- the pull loop -----------------------------------------------------------------------

    async def run(self) -> None:
        """Background task: never dies; makes its lanes again after NATS comes back."""
        delay = 0.2
        ticker = asyncio.create_task(self._tick())
        try:
            while True:
                try:
                    await self._source.wait_ready(3600)
                    await self._serve(self._source.generation)
                    # Draining: running events finish; no more come.
                    await self._close_lanes()
                    while True:
                        await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    log.warning(
                        "event consumer restarting",
                        extra={"fields": {"error": f"{type(err).__name__}: {err}"}},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                finally:
                    await self._close_lanes()
        finally:
            ticker.cancel()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(ticker, *self._tasks, return_exceptions=True)

    def wake(self, namespace: str) -> None:
        """This replica stored an event of the namespace: open its lane now, not at the next
        scan."""
        if namespace not in self._lanes:
            self._woken.add(namespace)
            self._signal.set()

    async def _serve(self, generation: int) -> None:
        """Until NATS reconnects or the replica drains: scan, open and close lanes, ask, start."""
        next_scan = 0.0
        with_events: set[str] = set()
        while self._source.generation == generation and not self._stopping:
            now = self._clock.monotonic()
            if now >= next_scan:
                with_events = await self._source.namespaces_with_events()
                next_scan = now + SCAN_S
            await self._open_lanes(with_events | self._woken, now)
            self._woken.clear()
            await self._close_idle(with_events, now)
            due = await self._ask(now)
            self._start_events()
            self._signal.clear()
            wait = min(_PULL_WAIT_S, max(0.0, next_scan - self._clock.monotonic()))
            if due is not None:
                wait = min(wait, due)
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._signal.wait()

    async def _open_lanes(self, namespaces: set[str], now: float) -> None:
        for namespace in namespaces - self._lanes.keys():
            try:
                sub = await self._source.subscribe_events(namespace, self._signal.set)
            except Unavailable as err:
                log.warning(
                    "events lane not opened; retried at the next scan",
                    extra={"fields": {"namespace": namespace, "error": err.message}},
                )
                continue
            self._lanes[namespace] = _Lane(sub, now, {})
            self._order.setdefault(namespace, None)

    async def _close_idle(self, with_events: set[str], now: float) -> None:
        for namespace, lane in list(self._lanes.items()):
            if lane.sub.held:
                lane.last_event = now
                continue
            if (
                namespace in with_events
                or self._running[namespace] > 0
                or now - lane.last_event < LANE_IDLE_S
            ):
                continue
            del self._lanes[namespace]
            self._order.pop(namespace, None)
            await self._give_back(lane.sub)

    async def _ask(self, now: float) -> float | None:
        """Keeps each lane asked for its room; returns when a short ask falls due, if one does."""
        running_total = len(self._tasks)
        busy = {ns for ns, lane in self._lanes.items() if now - lane.last_event < _BUSY_S}
        due: float | None = None
        for namespace, lane in list(self._lanes.items()):
            room = fairness.ask_room(
                self._cfg.workers,
                running_total,
                self._running[namespace],
                namespace in busy,
                len(busy),
            )
            try:
                lane_due = await lane.sub.ask(room, self._batch_min, busy=bool(self._tasks))
            except Unavailable as err:
                # Its consumer is gone (deleted while idle): the next scan makes it again.
                log.info(
                    "events lane closed",
                    extra={"fields": {"namespace": namespace, "error": err.message}},
                )
                del self._lanes[namespace]
                await self._give_back(lane.sub)
                continue
            if lane_due is not None:
                due = lane_due if due is None else min(due, lane_due)
        return due

    def _start_events(self) -> None:
        """Fills the free slots with held events, the fairest namespace first."""
        cap = fairness.namespace_cap(self._cfg.workers)
        now = self._clock.monotonic()
        held = {ns: len(lane.sub.held) for ns, lane in self._lanes.items()}
        for namespace, n in held.items():
            if n:
                self._lanes[namespace].last_event = now
        while len(self._tasks) < self._cfg.workers:
            pick = fairness.next_namespace(self._order, held, self._running, cap)
            if pick is None:
                return
            namespace = pick
            lane = self._lanes[namespace]
            delivery = lane.sub.take()
            held[namespace] -= 1
            if delivery is None:
                continue
            lane.touched.pop(id(delivery), None)
            self._running[namespace] += 1
            self._order.pop(namespace, None)
            self._order[namespace] = None
            task = asyncio.create_task(self._handle(delivery))
            self._tasks.add(task)
            task.add_done_callback(functools.partial(self._done, namespace=namespace))

    async def _close_lanes(self) -> None:
        lanes, self._lanes = self._lanes, {}
        self._order = {ns: None for ns in self._order if self._running[ns] > 0}
        for lane in lanes.values():
            await self._give_back(lane.sub)

    @staticmethod
    async def _give_back(sub: Subscription) -> None:
        """Closes the subscription; events that came and were not started go back at once
        rather than after ack_wait."""
        for delivery in sub.take_all():
            await delivery.nak()
        await sub.close()

    def _done(self, task: asyncio.Task[None], *, namespace: str) -> None:
        self._tasks.discard(task)
        self._running[namespace] -= 1
        if self._running[namespace] <= 0:
            del self._running[namespace]
        self._signal.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("event handler failed", exc_info=task.exception())

    async def drain(self) -> None:
        """SIGTERM: take no more events; let the running ones finish (the caller bounds the
        wait)."""
        self._stopping = True
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def running(self) -> int:
        return len(self._tasks)

    # -- one event ---------------------------------------------------------------------------

    def _plan(self, ref: EventRef) -> Plan:
        config = self._event_config(ref.namespace, ref.function)
        policy = RetryPolicy(
            max_retries=self._cfg.max_retries
            if config is None or config.max_retries is None
            else config.max_retries,
            max_event_age_s=(
                self._cfg.max_event_age_s
                if config is None or config.max_event_age_s is None
                else float(config.max_event_age_s)
            ),
            retry_base_s=self._cfg.retry_base_s,
            retry_max_s=self._cfg.retry_max_s,
        )
        if config is None:
            return Plan(policy, Destination(), Destination())
        return Plan(policy, config.on_success, config.on_failure)

    async def _cap(self, ref: EventRef) -> int:
        try:
            record = await self._functions.get(ref.namespace, ref.function)
        except NimbusError:
            record = None
        limit = record.config.max_concurrency if record is not None else 0
        return async_cap(limit, self._cfg.workers)

    async def _handle(self, d: Delivery) -> None:
        try:
            ref = envelope.parse_event(d.headers, d.seq)
        except ValueError as err:
            log.error(
                "dropping a message that is not an event",
                extra={"fields": {"seq": d.seq, "error": str(err)}},
            )
            await d.term()
            return
        # Each delivery, retries included, is a span of the trace the accepting call began.
        with tracing.continued("async.run", d.headers.get(tracing.TRACEPARENT)) as span:
            if span.is_recording():
                span.set_attributes(
                    {
                        "nimbus.invocation_id": ref.invocation_id,
                        "nimbus.namespace": ref.namespace,
                        "nimbus.function": ref.function,
                        "nimbus.delivery": d.deliveries,
                    }
                )
            await self._handle_event(d, ref)

    async def _handle_event(self, d: Delivery, ref: EventRef) -> None:
        plan = self._plan(ref)
        now = self._clock.now()
        if expired(now - ref.submitted_at, plan.policy):
            with self._keep_alive(d):
                error = error_json("EventAgeExceeded", "the event aged out before it ran")
                await self._dead_letter(d, ref, plan, 0, 0, error, Reason.EVENT_TOO_OLD)
            return
        key = (ref.namespace, ref.function)
        if self._inflight[key] >= await self._cap(ref):
            await d.nak(_CAP_RETRY_S * (0.5 + self._draw()))
            return
        self._inflight[key] += 1
        try:
            with self._keep_alive(d):
                await self._run(d, ref, plan)
        except asyncio.CancelledError:
            # Shutting down mid-run: hand the event back now rather than after ack_wait.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(d.nak(), 1.0)
            raise
        finally:
            self._inflight[key] -= 1
            if self._inflight[key] <= 0:
                del self._inflight[key]

    @contextlib.contextmanager
    def _keep_alive(self, d: Delivery) -> Iterator[None]:
        """While the event is worked on, _tick sends its in-progress acks."""
        self._working[id(d)] = (d, self._clock.monotonic())
        try:
            yield
        finally:
            del self._working[id(d)]

    async def _tick(self) -> None:
        """One loop for every running event (not a task each): an in-progress ack once a third of
        ack_wait has passed since the last, so none is redelivered while it runs."""
        every = self._cfg.ack_wait_s / 3
        while True:
            await asyncio.sleep(every / 2)
            now = self._clock.monotonic()
            due = [(key, d) for key, (d, last) in self._working.items() if now - last >= every]
            for key, d in due:
                if key in self._working:
                    self._working[key] = (d, now)
            # Events at hand, not started yet (their lane waits for a fair slot).
            for lane in list(self._lanes.values()):
                held = {id(d): d for d in lane.sub.held}
                lane.touched = {k: t for k, t in lane.touched.items() if k in held}
                for key, d in held.items():
                    last = lane.touched.setdefault(key, now)
                    if now - last >= every:
                        lane.touched[key] = now
                        due.append((key, d))
            await asyncio.gather(*(d.in_progress() for _, d in due), return_exceptions=True)

    async def _run(self, d: Delivery, ref: EventRef, plan: Plan) -> None:
        if d.deliveries > 1 or self._records_down:
            # It may have run, even finished, before; or the outcome may not be kept: find out
            # first.
            try:
                started = await self._records.move(
                    ref, Move(S.RUNNING, attempts_delta=1), self._clock.now()
                )
            except Unavailable as err:
                # No record, no run: the outcome could not be kept. Not the function's fault.
                self._records_down = True
                log.warning(
                    "record store unavailable; event requeued",
                    extra={"fields": {"error": err.message}},
                )
                await d.nak(requeue_delay(d.deliveries, plan.policy, self._draw()))
                return
            self._records_down = False
            if not started.applied and started.status in TERMINAL:
                await d.ack()  # finished before; only its ack was lost
                return
            mark = _Mark(
                counted=True, attempts=started.attempts if started.applied else d.deliveries
            )
            outcome, result, error = await self._invoke(ref, d.data)
        else:
            # A first delivery has not run before: the run is counted with its outcome, and shows
            # as RUNNING only once it lasts _MARK_RUNNING_AFTER_S (most runs end before that).
            mark = _Mark(counted=False, attempts=1)
            timer = asyncio.get_running_loop().call_later(
                _MARK_RUNNING_AFTER_S, self._mark_running, ref, mark
            )
            try:
                outcome, result, error = await self._invoke(ref, d.data)
            finally:
                timer.cancel()
                if mark.writing is not None:
                    await mark.writing
        now = self._clock.now()
        decision = decide(
            outcome, mark.attempts, d.deliveries, now - ref.submitted_at, plan.policy, self._draw()
        )
        await self._apply(d, ref, plan, decision, mark, result, error)

    def _mark_running(self, ref: EventRef, mark: _Mark) -> None:
        async def write() -> None:
            try:
                moved = await self._records.move(
                    ref, Move(S.RUNNING, attempts_delta=1), self._clock.now()
                )
            except Unavailable:
                return  # the outcome's write counts the run instead
            if moved.applied:
                mark.counted, mark.attempts = True, moved.attempts

        mark.writing = asyncio.ensure_future(write())

    async def _invoke(
        self, ref: EventRef, payload: bytes
    ) -> tuple[Outcome, InvokeResult | None, bytes]:
        who = Principal(namespace=ref.namespace, key_id="async", admin=False)
        try:
            result = await self._runner.invoke(
                who, ref.function, ref.qualifier, payload, _INVOKE_DEADLINE_S
            )
        except Throttled as err:
            return Outcome.THROTTLED, None, error_json("Throttled", err.message)
        except NotFound as err:
            return Outcome.NOT_FOUND, None, error_json("ResourceNotFound", err.message)
        except InvalidArgument as err:
            return Outcome.INVALID, None, error_json("InvalidEvent", err.message)
        except NimbusError as err:
            return Outcome.UNAVAILABLE, None, error_json("ServiceUnavailable", err.message)
        except Exception as err:
            log.exception("async invoke failed")
            return (
                Outcome.UNAVAILABLE,
                None,
                error_json("ServiceUnavailable", f"{type(err).__name__}: {err}"),
            )
        if result.function_error:
            return Outcome.FUNCTION_ERROR, result, result.payload
        return Outcome.SUCCEEDED, result, b""

    async def _apply(
        self,
        d: Delivery,
        ref: EventRef,
        plan: Plan,
        decision: Decision,
        mark: _Mark,
        result: InvokeResult | None,
        error: bytes,
    ) -> None:
        version = result.executed_version if result is not None else None
        request_id = result.request_id if result is not None else None
        attempts = mark.attempts
        # The run counts once: in its RUNNING mark if it got one, else in its outcome.
        uncounted = 0 if mark.counted else 1
        if decision.action == Action.ACK:
            assert result is not None
            move = Move(
                S.SUCCEEDED,
                attempts_delta=uncounted,
                result=result.payload,
                error=b"",
                version=version,
                request_id=request_id,
            )
            if not await self._record(ref, move):
                await d.nak(requeue_delay(d.deliveries, plan.policy, self._draw()))
                return
            await self._send_to(plan.on_success, ref, d, "Success", attempts, result, b"")
            await d.ack()
        elif decision.action == Action.RETRY:
            await self._record(
                ref,
                Move(
                    S.QUEUED,
                    attempts_delta=uncounted,
                    error=error,
                    version=version,
                    request_id=request_id,
                ),
            )
            await d.nak(decision.delay_s)
        elif decision.action == Action.REQUEUE:
            # Not an attempt: give a counted run back (an uncounted one leaves the record as it is).
            if mark.counted:
                await self._record(ref, Move(S.QUEUED, attempts_delta=-1))
            await d.nak(decision.delay_s)
        else:
            reason = decision.reason or Reason.RETRIES_EXHAUSTED
            # When the function did not run this time (throttled, gone), the run is not counted.
            delta = 0 if result is not None else -1
            await self._dead_letter(
                d,
                ref,
                plan,
                max(0, attempts + delta),
                delta + uncounted,
                error,
                reason,
                version,
                request_id,
            )

    async def _dead_letter(
        self,
        d: Delivery,
        ref: EventRef,
        plan: Plan,
        attempts: int,
        attempts_delta: int,
        error: bytes,
        reason: Reason,
        version: str | None = None,
        request_id: str | None = None,
    ) -> None:
        now = self._clock.now()
        letter = dead_letter_of(ref, d.data, error, attempts, reason.value, now)
        try:
            await self._source.publish(
                envelope.dlq_subject(ref.namespace, ref.function),
                letter.to_json(),
                {},
                f"dlq:{ref.invocation_id}:{ref.seq}",
            )
        except Unavailable as err:
            log.warning(
                "dead letter not stored; event requeued", extra={"fields": {"error": err.message}}
            )
            await d.nak(requeue_delay(d.deliveries, plan.policy, self._draw()))
            return
        move = Move(
            S.FAILED,
            attempts_delta=attempts_delta,
            error=error,
            version=version,
            request_id=request_id,
        )
        if not await self._record(ref, move):
            await d.nak(requeue_delay(d.deliveries, plan.policy, self._draw()))
            return
        condition = "EventAgeExceeded" if reason == Reason.EVENT_TOO_OLD else "RetriesExhausted"
        await self._send_to(plan.on_failure, ref, d, condition, attempts, None, error)
        await d.ack()
        telemetry.dead_lettered(ref.namespace, ref.function)

    async def _record(self, ref: EventRef, move: Move) -> bool:
        """Writes a move, retrying a lost Redis for a few seconds (the event is kept alive)."""
        delay = 0.2
        for attempt in range(_RECORD_TRIES):
            try:
                await self._records.move(ref, move, self._clock.now())
                self._records_down = False
                return True
            except Unavailable as err:
                self._records_down = True
                if attempt == _RECORD_TRIES - 1:
                    log.warning(
                        "outcome not recorded",
                        extra={
                            "fields": {"invocation_id": ref.invocation_id, "error": err.message}
                        },
                    )
                    return False
                await self._clock.sleep(delay)
                delay = min(delay * 2, 2.0)
        return False

    async def _send_to(
        self,
        dest: Destination,
        ref: EventRef,
        d: Delivery,
        condition: str,
        attempts: int,
        result: InvokeResult | None,
        error: bytes,
    ) -> None:
        """Best effort: a destination that cannot take the record is logged, never retried
        forever. Not past envelope.MAX_DEPTH destinations in a row (a loop)."""
        if not dest:
            return
        depth = envelope.depth_of(d.headers) + 1
        if depth > envelope.MAX_DEPTH:
            log.warning(
                "destination not sent: the event came through too many destinations (a loop?)",
                extra={"fields": {"invocation_id": ref.invocation_id, "depth": depth}},
            )
            return
        body = destination_record(
            ref, d.data, condition, attempts, result, error, self._clock.now()
        )
        try:
            if dest.function:
                dest_id = envelope.derived_id("destination", ref.invocation_id, str(ref.seq))
                await self._submitter.enqueue(
                    ref.namespace,
                    dest.function,
                    "",
                    body,
                    dest_id,
                    dest_id,
                    "destination",
                    depth=depth,
                )
            else:
                # A subject of the function's own namespace, as its triggers see it.
                await self._source.publish_core(
                    subjects.wire_subject(ref.namespace, dest.subject),
                    body,
                    {envelope.H_DEPTH: str(depth)},
                )
        except NimbusError as err:
            log.warning(
                "destination not reached",
                extra={"fields": {"invocation_id": ref.invocation_id, "error": err.message}},
            )


def async_cap(max_concurrency: int, workers: int) -> int:
    """How many events of one function an invoker runs at once. max_concurrency holds across the
    replicas (a Redis slot per call) for sync and async alike; async takes at most (M-1)//2 per
    replica, so with two replicas at least one of M >= 3 slots stays for sync calls."""
    if max_concurrency <= 0:
        return workers
    return max(1, min(workers, (max_concurrency - 1) // 2))


def _json_or_text(raw: bytes) -> object:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def destination_record(
    ref: EventRef,
    event: bytes,
    condition: str,
    attempts: int,
    result: InvokeResult | None,
    error: bytes,
    now: float,
) -> bytes:
    """The record a destination receives, in the shape of Lambda's destination records."""
    response: dict[str, object] = {"statusCode": 200}
    if result is not None:
        response["executedVersion"] = result.executed_version
        if result.function_error:
            response["functionError"] = result.function_error
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": iso(now),
            "requestContext": {
                "requestId": ref.invocation_id,
                "function": ref.function,
                "qualifier": ref.qualifier,
                "condition": condition,
                "approximateInvokeCount": attempts,
            },
            "requestPayload": _json_or_text(event),
            "responseContext": response,
            "responsePayload": _json_or_text(
                result.payload if result is not None and condition == "Success" else error
            ),
        }
    ).encode()
