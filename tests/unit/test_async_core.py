"""The pure parts of the async path: retry decisions, record lifecycle, event envelope, config."""

from __future__ import annotations

import json

import pytest
from nimbus.common.config import ConfigError
from nimbus.common.errors import InvalidArgument
from nimbus.common.eventconfig import Destination, EventConfig, check_event_config
from nimbus.common.triggers import TriggerRecord, check_subject, check_trigger
from nimbus.invoker.events import envelope
from nimbus.invoker.events.config import EventsConfig
from nimbus.invoker.events.consumer import destination_record
from nimbus.invoker.events.records import EventRef, allowed_from, can_move
from nimbus.invoker.events.records import InvocationStatus as S
from nimbus.invoker.events.retry import (
    Action,
    Outcome,
    Reason,
    RetryPolicy,
    decide,
    requeue_delay,
    retry_delay,
)
from nimbus.invoker.sync.invoke import InvokeResult

POLICY = RetryPolicy(max_retries=2, max_event_age_s=3600, retry_base_s=1, retry_max_s=300)


@pytest.mark.parametrize(
    ("attempts", "draw", "want"),
    [
        (1, 0.0, 0.5),
        (1, 1.0, 1.0),
        (2, 0.0, 1.0),
        (3, 0.5, 3.0),
        (20, 1.0, 300.0),
        (20, 0.0, 150.0),
    ],
)
def test_retry_delay_doubles_with_equal_jitter_and_a_cap(attempts, draw, want):
    assert retry_delay(attempts, POLICY, draw) == pytest.approx(want)


def test_requeue_delay_grows_with_deliveries_and_is_capped():
    assert requeue_delay(1, POLICY, 1.0) == pytest.approx(0.5)
    assert requeue_delay(3, POLICY, 1.0) == pytest.approx(2.0)
    assert requeue_delay(1000, POLICY, 1.0) == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("outcome", "attempts", "age", "want"),
    [
        (Outcome.SUCCEEDED, 1, 0, (Action.ACK, None)),
        (Outcome.FUNCTION_ERROR, 1, 0, (Action.RETRY, None)),
        (Outcome.FUNCTION_ERROR, 2, 0, (Action.RETRY, None)),
        # max_retries 2: the third run's failure is final.
        (Outcome.FUNCTION_ERROR, 3, 0, (Action.DEAD_LETTER, Reason.RETRIES_EXHAUSTED)),
        (Outcome.FUNCTION_ERROR, 1, 3599.9, (Action.DEAD_LETTER, Reason.EVENT_TOO_OLD)),
        # Throttling never exhausts attempts, only the event's age ends it.
        (Outcome.THROTTLED, 50, 0, (Action.REQUEUE, None)),
        (Outcome.UNAVAILABLE, 50, 0, (Action.REQUEUE, None)),
        (Outcome.THROTTLED, 1, 3599.9, (Action.DEAD_LETTER, Reason.EVENT_TOO_OLD)),
        (Outcome.NOT_FOUND, 1, 0, (Action.DEAD_LETTER, Reason.NOT_FOUND)),
        (Outcome.INVALID, 1, 0, (Action.DEAD_LETTER, Reason.INVALID)),
    ],
)
def test_decide(outcome, attempts, age, want):
    decision = decide(outcome, attempts, deliveries=attempts, age_s=age, policy=POLICY, draw=0.5)
    assert (decision.action, decision.reason) == want
    if decision.action in (Action.RETRY, Action.REQUEUE):
        assert decision.delay_s > 0


def test_zero_retries_dead_letters_the_first_failure():
    decision = decide(Outcome.FUNCTION_ERROR, 1, 1, 0, RetryPolicy(max_retries=0), 0.5)
    assert decision.action == Action.DEAD_LETTER


def test_record_lifecycle_table():
    assert (
        can_move(S.QUEUED, S.RUNNING)
        and can_move(S.RUNNING, S.SUCCEEDED)
        and can_move(S.RUNNING, S.QUEUED)
    )
    assert can_move(S.RUNNING, S.RUNNING)  # redelivery after an invoker died mid-run
    assert not can_move(S.SUCCEEDED, S.RUNNING) and not can_move(S.FAILED, S.QUEUED)
    assert not can_move(S.SUCCEEDED, S.FAILED)
    assert allowed_from(S.RUNNING) == {S.QUEUED, S.RUNNING}
    assert allowed_from(S.FAILED) == {S.QUEUED, S.RUNNING}
    # A first run that ended before it was marked RUNNING records its outcome straight from QUEUED.
    assert allowed_from(S.SUCCEEDED) == {S.QUEUED, S.RUNNING}
    assert allowed_from(S.QUEUED) == {S.QUEUED, S.RUNNING}


def test_envelope_round_trip_and_rejects():
    headers = envelope.event_headers("id-1", "ns", "fn", "prod", 1234.5, "api")
    ref = envelope.parse_event(headers, 7)
    assert ref == EventRef("id-1", "ns", "fn", "prod", 1234.5, 7)
    with pytest.raises(ValueError):
        envelope.parse_event({}, 1)
    with pytest.raises(ValueError):
        envelope.parse_event({**headers, envelope.H_SUBMITTED: "soon"}, 1)


def test_idempotency_ids_are_stable_and_scoped():
    a = envelope.derived_id("key", "ns", "fn", "k1")
    assert a == envelope.derived_id("key", "ns", "fn", "k1")
    assert a != envelope.derived_id("key", "other", "fn", "k1")
    envelope.check_invocation_id(a)
    with pytest.raises(InvalidArgument, match="id"):
        envelope.check_invocation_id("../etc")
    with pytest.raises(InvalidArgument, match="x-nimbus-idempotency-key"):
        envelope.check_idempotency_key("x" * 129)
    with pytest.raises(InvalidArgument):
        envelope.check_idempotency_key("bad\nkey")


def test_dead_letter_round_trip_keeps_the_event_bytes():
    letter = envelope.DeadLetter(
        "id", "ns", "fn", "", b'{"a": 1}', b'{"errorType": "E"}', 3, "c", "f", "retries_exhausted"
    )
    back = envelope.DeadLetter.from_json(letter.to_json(), 9)
    assert (
        back.event == b'{"a": 1}'
        and back.error == b'{"errorType": "E"}'
        and back.seq == 9
        and back.attempts == 3
    )


def test_destination_record_shape():
    ref = EventRef("id", "ns", "fn", "", 0.0, 1)
    result = InvokeResult("rq", b'{"ok": true}', "", 1, 1, False, "$LATEST")
    record = json.loads(destination_record(ref, b'{"in": 1}', "Success", 1, result, b"", 10.0))
    assert record["requestContext"]["condition"] == "Success"
    assert record["requestPayload"] == {"in": 1} and record["responsePayload"] == {"ok": True}
    failed = json.loads(
        destination_record(ref, b"{}", "RetriesExhausted", 3, None, b'{"errorType": "E"}', 10.0)
    )
    assert (
        failed["responsePayload"] == {"errorType": "E"}
        and failed["requestContext"]["approximateInvokeCount"] == 3
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("cron", "", "", ""), "type"),
        (("timer", "", "", ""), "schedule"),
        (("timer", "61 * * * *", "", ""), "schedule: minute"),
        (("timer", "@every 1s", "x", ""), "subject"),
        (("subject", "", "", ""), "subject: required"),
        (("subject", "", "nimbus.events.x", ""), "reserved"),
        (("subject", "", "a..b", ""), "not a NATS subject"),
        (("subject", "", "a.>.b", ""), "last token"),
        (("subject", "", "has space", ""), "not a NATS subject"),
        (("subject", "@every 1s", "a", ""), "schedule"),
        (("http", "@every 1s", "", ""), "schedule"),
        (("http", "", "", "bad qualifier!"), "qualifier"),
    ],
)
def test_trigger_checks_name_the_field(args, message):
    with pytest.raises(InvalidArgument, match=message):
        check_trigger(*args)


def test_valid_triggers():
    check_trigger("timer", "@every 10s", "", "")
    check_trigger("timer", "*/5 * * * *", "", "prod")
    check_trigger("subject", "", "orders.*.created", "3")
    check_trigger("subject", "", "orders.>", "$LATEST")
    check_trigger("http", "", "", "")
    with pytest.raises(InvalidArgument, match="wildcards"):
        check_subject("a.*", wildcards=False)


def test_trigger_record_json_and_url():
    record = TriggerRecord("http", "ns", "fn", "http", created_at="t")
    assert TriggerRecord.from_json(record.to_json()) == record
    assert record.url == "/fn/ns/fn"
    assert TriggerRecord("x", "ns", "fn", "timer").url == ""


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (EventConfig("ns", "fn", max_retries=6), "max_retries"),
        (EventConfig("ns", "fn", max_retries=-1), "max_retries"),
        (EventConfig("ns", "fn", max_event_age_s=30), "max_event_age_s"),
        (EventConfig("ns", "fn", on_success=Destination("a", "b")), "on_success"),
        (EventConfig("ns", "fn", on_failure=Destination(subject="x.*")), "on_failure.subject"),
        (EventConfig("ns", "fn", on_failure=Destination(function="1bad")), "on_failure.function"),
    ],
)
def test_event_config_checks(config, message):
    with pytest.raises(InvalidArgument, match=message):
        check_event_config(config)


def test_event_config_json_round_trip():
    config = EventConfig(
        "ns", "fn", max_retries=0, on_failure=Destination(subject="alerts.fn"), updated_at="t"
    )
    check_event_config(config)
    assert EventConfig.from_json(config.to_json()) == config


def test_events_config_documented_example_and_errors():
    env = {
        "NIMBUS_NATS_URL": "nats://127.0.0.1:4222",
        "NIMBUS_REDIS_URL": "redis://127.0.0.1:6379/0",
        "NIMBUS_ASYNC_WORKERS": "8",
        "NIMBUS_ASYNC_ACK_WAIT_S": "5",
        "NIMBUS_ASYNC_MAX_RETRIES": "3",
        "NIMBUS_ASYNC_MAX_EVENT_AGE_S": "600",
        "NIMBUS_ASYNC_RETRY_BASE_S": "0.2",
        "NIMBUS_ASYNC_RETRY_MAX_S": "10",
        "NIMBUS_ASYNC_MAX_EVENT_KB": "128",
        "NIMBUS_INVOCATION_TTL_S": "3600",
        "NIMBUS_DLQ_MAX_AGE_S": "86400",
    }
    cfg = EventsConfig.from_env(env)
    assert (cfg.workers, cfg.ack_wait_s, cfg.max_retries, cfg.max_event_bytes) == (
        8,
        5.0,
        3,
        128 * 1024,
    )
    assert EventsConfig.from_env({}) == EventsConfig()
    for name, value in (
        ("NIMBUS_ASYNC_MAX_RETRIES", "6"),
        ("NIMBUS_ASYNC_ACK_WAIT_S", "1"),
        ("NIMBUS_NATS_URL", "http://x"),
        ("NIMBUS_ASYNC_WORKERS", "0"),
    ):
        with pytest.raises(ConfigError, match=name):
            EventsConfig.from_env({name: value})


@pytest.mark.parametrize(
    ("max_concurrency", "want"), [(0, 16), (1, 1), (2, 1), (3, 1), (5, 2), (10, 4), (100, 16)]
)
def test_async_cap_leaves_sync_room(max_concurrency, want):
    from nimbus.invoker.events.consumer import async_cap

    assert async_cap(max_concurrency, 16) == want
