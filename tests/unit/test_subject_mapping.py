"""Tenant subjects: the user's subject ↔ the wire subject, validation, and the subject trigger's
durable delivery (a fake bus; no NATS)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from nimbus.common import subjects
from nimbus.common.auth import Principal
from nimbus.common.errors import InvalidArgument, TooLarge, Unavailable
from nimbus.common.eventconfig import Destination, check_destination
from nimbus.common.triggers import TriggerRecord, check_subject
from nimbus.invoker.events import envelope
from nimbus.invoker.events.publish import SubjectPublisher
from nimbus.invoker.stores.jetstream import Stored
from nimbus.invoker.triggers.subject import SubjectTriggers, invocation_id_of


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching (for the property below)."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


PLATFORM = [
    "nimbus.events.victim.fn",
    "nimbus.dlq.victim.fn",
    "logs.victim.fn",
    "nimbus.triggers.victim.abc123",
    "$JS.API.STREAM.INFO.X",
    "_INBOX.abc",
    "tenant.victim.orders.created",
    "tenant.victim.x",
]


@pytest.mark.parametrize(
    "user", [">", "*.>", "*", "logs.victim.>", "*.events.victim.*", "*.dlq.>", "*.*.*", "a.>"]
)
def test_no_wildcard_leaves_the_namespace(user):
    check_subject(user)  # all of these are valid subjects of one's own namespace
    wire = subjects.wire_subject("attacker", user)
    assert wire.startswith("tenant.attacker.")
    for other in PLATFORM:
        assert not matches(wire, other), (wire, other)
    # ... and they do match the attacker's own subjects.
    assert matches(subjects.wire_subject("attacker", ">"), "tenant.attacker.a.b")


def test_wire_and_user_subjects():
    assert subjects.wire_subject("team-a", "orders.created") == "tenant.team-a.orders.created"
    assert subjects.user_subject("team-a", "tenant.team-a.orders.created") == "orders.created"
    assert subjects.user_subject("team-a", "tenant.team-b.x") == "tenant.team-b.x"
    assert subjects.namespace_subjects("team-a") == "tenant.team-a.>"
    assert subjects.stream_name("team-a") == "NIMBUS_SUBJECTS_team-a"
    assert subjects.trigger_id_of(subjects.consumer_name("abc")) == "abc"
    assert subjects.trigger_id_of("invokers") is None


def test_the_queues_stay_out_of_tenant_space():
    stream = subjects.stream_config("ns")
    assert stream.subjects == ["tenant.ns.>"]
    consumer = subjects.consumer_config("ns", "t1", "orders.*")
    assert consumer.filter_subject == "tenant.ns.orders.*"
    assert consumer.deliver_subject == "nimbus.triggers.ns.t1"
    assert not matches("tenant.ns.>", consumer.deliver_subject or "")
    assert consumer.deliver_group == subjects.queue_group("t1")


@pytest.mark.parametrize(
    "subject", ["tenant.other.orders", "nimbus.events.x", "$JS.API.x", "_INBOX.x", "a..b", "a.>.b"]
)
def test_reserved_and_malformed_subjects_are_refused(subject):
    with pytest.raises(InvalidArgument, match="^subject"):
        check_subject(subject)


def test_destinations_take_no_wildcards():
    with pytest.raises(InvalidArgument, match="on_success.subject"):
        check_destination(Destination(subject="*.x"), "on_success")
    with pytest.raises(InvalidArgument, match="on_success.subject"):
        check_destination(Destination(subject="tenant.victim.x"), "on_success")
    check_destination(Destination(subject="alerts.x"), "on_success")


def test_stream_position_and_derived_ids():
    plain = "$JS.ACK.NIMBUS_SUBJECTS_ns.trigger-t1.1.42.7.1700000000000000000.0"
    domain = "$JS.ACK.dom.hash.NIMBUS_SUBJECTS_ns.trigger-t1.1.42.7.1700000000000000000.0.tok"
    assert subjects.stream_position(plain) == (42, 1700000000000000000)
    assert subjects.stream_position(domain) == (42, 1700000000000000000)
    redelivered = "$JS.ACK.NIMBUS_SUBJECTS_ns.trigger-t1.2.42.9.1700000000000000000.0"
    assert invocation_id_of("t1", plain) == invocation_id_of("t1", redelivered)
    assert invocation_id_of("t1", plain) != invocation_id_of("t2", plain)
    with pytest.raises(ValueError):
        invocation_id_of("t1", "_INBOX.abc")


# -- the trigger's delivery, with a fake bus ------------------------------------------------------


@dataclass
class FakeMsg:
    subject: str
    data: bytes
    reply: str
    headers: dict[str, str] | None = None
    acked: list[str] = field(default_factory=list)

    async def ack(self) -> None:
        self.acked.append("ack")

    async def nak(self, delay: float | None = None) -> None:
        self.acked.append("nak")


class FakeSub:
    async def unsubscribe(self, limit: int = 0) -> None:
        pass


class FakeBus:
    generation = 1

    def __init__(self) -> None:
        self.queues: set[tuple[str, str, str]] = set()
        self.handlers: dict[str, Callable[[FakeMsg], Awaitable[None]]] = {}

    async def wait_ready(self, timeout_s: float) -> None:
        pass

    async def subscribe(self, subject, queue, cb):  # type: ignore[no-untyped-def]
        self.handlers[subject] = cb
        return FakeSub()

    async def ensure_subject_queue(self, namespace: str, trigger_id: str, subject: str) -> None:
        self.queues.add((namespace, trigger_id, subject))

    async def delete_subject_queue(self, namespace: str, trigger_id: str) -> None:
        self.queues = {q for q in self.queues if q[:2] != (namespace, trigger_id)}

    async def subject_queues(self) -> list[tuple[str, str]]:
        return [q[:2] for q in self.queues]


class FakeTriggers:
    def __init__(self, *records: TriggerRecord) -> None:
        self.items = {r.trigger_id.encode(): r for r in records}

    async def wait_changed(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)


class FakeEnqueuer:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, bytes, str]] = []
        self.depths: list[int] = []
        self.down = False

    async def enqueue(
        self, namespace, name, qualifier, payload, invocation_id, msg_id, source, depth=0
    ):  # type: ignore[no-untyped-def]
        if self.down:
            raise Unavailable("NATS is down")
        self.events.append((namespace, name, payload, msg_id))
        self.depths.append(depth)


TRIGGER = TriggerRecord("t1", "team-a", "fn", "subject", subject="orders.*")


async def test_a_trigger_gets_a_durable_queue_and_acks_only_stored_events():
    bus, enqueuer = FakeBus(), FakeEnqueuer()
    triggers = SubjectTriggers(FakeTriggers(TRIGGER), bus, enqueuer, lambda: 0.0)  # type: ignore[arg-type]
    await triggers.reconcile()
    assert bus.queues == {("team-a", "t1", "orders.*")}
    handler = bus.handlers["nimbus.triggers.team-a.t1"]
    reply = "$JS.ACK.NIMBUS_SUBJECTS_team-a.trigger-t1.1.5.5.1700000000000000000.0"

    enqueuer.down = True
    msg = FakeMsg("tenant.team-a.orders.new", b"plain", reply)
    await handler(msg)
    assert msg.acked == ["nak"] and enqueuer.events == []

    enqueuer.down = False
    await handler(msg)
    assert msg.acked == ["nak", "ack"]
    [(ns, fn, payload, msg_id)] = enqueuer.events
    assert (ns, fn) == ("team-a", "fn") and msg_id == invocation_id_of("t1", reply)
    assert b'"subject": "orders.new"' in payload  # the user's name, not the wire's

    # A destination's record carries its depth on to the event.
    await handler(FakeMsg("tenant.team-a.orders.x", b"{}", reply, {"Nimbus-Depth": "3"}))
    assert enqueuer.depths == [0, 3]
    del enqueuer.events[1:]

    # Not from JetStream: ignored.
    stray = FakeMsg("nimbus.triggers.team-a.t1", b"{}", "")
    await handler(stray)
    assert stray.acked == [] and len(enqueuer.events) == 1


async def test_queues_of_deleted_triggers_go():
    bus, enqueuer = FakeBus(), FakeEnqueuer()
    source = FakeTriggers(TRIGGER)
    triggers = SubjectTriggers(source, bus, enqueuer, lambda: 0.0)  # type: ignore[arg-type]
    await triggers.reconcile()
    bus.queues.add(("team-b", "orphan", ">"))  # a trigger deleted while no invoker ran
    await triggers.sweep()
    assert ("team-b", "orphan", ">") in bus.queues  # seen once: maybe not watched yet
    await triggers.sweep()
    assert ("team-b", "orphan", ">") not in bus.queues
    source.items.clear()
    await triggers.reconcile()
    assert bus.queues == set()


class FakeQueue:
    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, str]] = []

    async def publish_subject(self, namespace, wire_subject, data, msg_id):  # type: ignore[no-untyped-def]
        self.published.append((namespace, wire_subject, data, msg_id))
        return Stored(seq=len(self.published), duplicate=False)


async def test_a_key_publishes_into_its_own_namespace_only():
    queue = FakeQueue()
    publisher = SubjectPublisher(queue, max_bytes=10)
    who = Principal(namespace="team-b", key_id="k", admin=False)
    await publisher.publish(who, "orders.created", b"{}", "key-1")
    [(ns, wire, data, msg_id)] = queue.published
    assert (ns, wire, data) == ("team-b", "tenant.team-b.orders.created", b"{}") and msg_id
    for subject in ("orders.*", ">", "tenant.team-a.orders.created", "nimbus.events.team-a.fn"):
        with pytest.raises(InvalidArgument, match="^subject"):
            await publisher.publish(who, subject, b"{}")
    with pytest.raises(TooLarge):
        await publisher.publish(who, "orders.created", b"x" * 11)
    assert len(queue.published) == 1


def test_depth_of():
    assert envelope.depth_of(None) == 0
    assert envelope.depth_of({"Nimbus-Depth": "7"}) == 7
    assert envelope.depth_of({"Nimbus-Depth": "-1"}) == 0
    assert envelope.depth_of({"Nimbus-Depth": "x"}) == 0
    headers = envelope.event_headers("i", "ns", "fn", "", 0.0, "subject", 2)
    assert envelope.depth_of(headers) == 2
    assert envelope.H_DEPTH not in envelope.event_headers("i", "ns", "fn", "", 0.0, "api")
