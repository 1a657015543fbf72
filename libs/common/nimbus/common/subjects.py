"""Tenant subjects on NATS: every subject a tenant names lives under its namespace. Pure.

A user's subject `orders.created` in namespace `team-a` is `tenant.team-a.orders.created` on the
wire; the API, the CLI and the events a function receives show the user's own name. Every other
subject (nimbus.events.>, nimbus.dlq.>, logs.>, nimbus.triggers.>, $JS.>, _INBOX.>) is the
platform's, and no tenant subject can match it: the namespace token is fixed, never a wildcard,
and a wildcard in the user's part (`*`, `>`) only ever stands for tokens after it. Destinations and
the publish route map the same way, so a tenant publishes only into its own namespace.

Subject triggers are durable: each namespace has a JetStream stream over `tenant.<ns>.>` with
interest retention (a message is kept until every subject trigger that matches it has taken it,
and not at all when none matches), and each subject trigger a durable push consumer on it, filtered
on its wire subject and delivered to `nimbus.triggers.<ns>.<trigger id>` for the invokers' queue
group (api makes both before it stores the trigger; nimbus.common.subjectqueue). Messages
published while no invoker is connected wait in the stream.
"""

from __future__ import annotations

from nats.js import api

TENANT_PREFIX = "tenant"
STREAM_PREFIX = "NIMBUS_SUBJECTS_"
CONSUMER_PREFIX = "trigger-"
DELIVER_PREFIX = "nimbus.triggers"
# A namespace's queue keeps a message at most this long and this many bytes in all (publishing
# into a full queue fails rather than evicting older messages), as SQS keeps a message 4 days.
MAX_AGE_S = 4 * 86400.0
MAX_MB = 256
# A repeat of a message id (the publish route's x-nimbus-idempotency-key) within this window is
# stored once.
DUPLICATE_WINDOW_S = 600.0
# An invoker hands a message to the events stream in milliseconds; one it has not acked within
# this long goes to another invoker.
ACK_WAIT_S = 30.0
MAX_ACK_PENDING = 1000


def wire_subject(namespace: str, subject: str) -> str:
    """The subject on NATS of a user's subject (or subject filter) in namespace."""
    return f"{TENANT_PREFIX}.{namespace}.{subject}"


def namespace_subjects(namespace: str) -> str:
    """Every subject of the namespace (its stream's filter)."""
    return wire_subject(namespace, ">")


def user_subject(namespace: str, wire: str) -> str:
    """The user's name of a wire subject of namespace (a subject outside it comes back as it
    is)."""
    prefix = wire_subject(namespace, "")
    return wire[len(prefix) :] if wire.startswith(prefix) else wire


def stream_name(namespace: str) -> str:
    # Namespace names ([A-Za-z][A-Za-z0-9_-]*) are valid in stream names.
    return f"{STREAM_PREFIX}{namespace}"


def consumer_name(trigger_id: str) -> str:
    return f"{CONSUMER_PREFIX}{trigger_id}"


def trigger_id_of(consumer: str) -> str | None:
    """The trigger id of one of our consumers' names, or None for any other consumer."""
    return consumer[len(CONSUMER_PREFIX) :] if consumer.startswith(CONSUMER_PREFIX) else None


def deliver_subject(namespace: str, trigger_id: str) -> str:
    return f"{DELIVER_PREFIX}.{namespace}.{trigger_id}"


def queue_group(trigger_id: str) -> str:
    return f"nimbus-trigger-{trigger_id}"


def stream_config(namespace: str) -> api.StreamConfig:
    return api.StreamConfig(
        name=stream_name(namespace),
        subjects=[namespace_subjects(namespace)],
        retention=api.RetentionPolicy.INTEREST,
        storage=api.StorageType.FILE,
        max_age=MAX_AGE_S,
        max_bytes=MAX_MB * 1024 * 1024,
        discard=api.DiscardPolicy.NEW,
        duplicate_window=DUPLICATE_WINDOW_S,
    )


def consumer_config(namespace: str, trigger_id: str, subject: str) -> api.ConsumerConfig:
    """The durable consumer of one subject trigger (subject: the user's). It starts with the
    messages published after it was made."""
    name = consumer_name(trigger_id)
    return api.ConsumerConfig(
        durable_name=name,
        name=name,
        deliver_subject=deliver_subject(namespace, trigger_id),
        deliver_group=queue_group(trigger_id),
        filter_subject=wire_subject(namespace, subject),
        deliver_policy=api.DeliverPolicy.NEW,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_deliver=-1,
        max_ack_pending=MAX_ACK_PENDING,
    )


def stream_position(reply: str | None) -> tuple[int, int]:
    """(stream sequence, timestamp in ns) of a JetStream delivery, from its ack subject in either
    form: $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> or, with a domain
    and an account hash, $JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.
    <ts>.<pending>[.<token>]."""
    tokens = (reply or "").split(".")
    if tokens[:2] == ["$JS", "ACK"]:
        if len(tokens) == 9:
            return int(tokens[5]), int(tokens[7])
        if len(tokens) >= 11:
            return int(tokens[7]), int(tokens[9])
    raise ValueError(f"not a JetStream ack subject: {reply!r}")
