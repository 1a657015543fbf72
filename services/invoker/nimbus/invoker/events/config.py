"""The async path's settings (a part of InvokerConfig)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from nimbus.common.config import ConfigError, get_float, get_int, get_str
from nimbus.common.eventconfig import MAX_EVENT_AGE_S, MAX_RETRIES
from nimbus.invoker.stores.jetstream import StreamCaps


@dataclass(frozen=True, slots=True)
class EventsConfig:
    """NIMBUS_NATS_URL              NATS server with JetStream (default nats://127.0.0.1:4222)
    NIMBUS_REDIS_URL                 Redis for invocation records (default redis://127.0.0.1:6379/0)
    NIMBUS_ASYNC_WORKERS             async events one invoker runs at once; the rest of its capacity
                                     stays for sync calls (default 16)
    NIMBUS_ASYNC_ACK_WAIT_S          an event not acked (nor kept alive) for this long is given to
                                     another invoker; running events send in-progress acks every
                                     third of it (default 30, minimum 3)
    NIMBUS_ASYNC_MAX_RETRIES         retries after a function error when the function's event
                                     config sets none (default 2, 0-5)
    NIMBUS_ASYNC_MAX_EVENT_AGE_S     an older event is dead-lettered, not run (default 21600 = 6 h)
    NIMBUS_ASYNC_RETRY_BASE_S        first retry delay after a function error; doubles (default 1)
    NIMBUS_ASYNC_RETRY_MAX_S         longest retry delay (default 300)
    NIMBUS_ASYNC_MAX_EVENT_KB        largest async event (default 256, at most 960)
    NIMBUS_INVOCATION_TTL_S          how long invocation records live in Redis (default 86400)
    NIMBUS_DLQ_MAX_AGE_S             how long dead letters are kept (default 1209600 = 14 days)
    NIMBUS_EVENTS_MAX_MB             the events stream's size; when full, new events get 429
                                     (default 1024)
    NIMBUS_EVENTS_PER_FUNCTION       events one function may have waiting (default 100000)
    NIMBUS_DLQ_MAX_MB                the dead-letter stream's size (default 256)
    NIMBUS_DLQ_PER_FUNCTION          dead letters kept per function; older ones go (default 10000)
    """

    nats_url: str = "nats://127.0.0.1:4222"
    redis_url: str = "redis://127.0.0.1:6379/0"
    workers: int = 16
    ack_wait_s: float = 30.0
    max_retries: int = 2
    max_event_age_s: float = 21600.0
    retry_base_s: float = 1.0
    retry_max_s: float = 300.0
    max_event_bytes: int = 256 * 1024
    record_ttl_s: int = 86400
    dlq_max_age_s: float = 1209600.0
    caps: StreamCaps = field(default_factory=StreamCaps)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> EventsConfig:
        nats_url = get_str(env, "NIMBUS_NATS_URL", "nats://127.0.0.1:4222")
        if not nats_url.startswith(("nats://", "tls://")):
            raise ConfigError(f"NIMBUS_NATS_URL={nats_url!r} must start with nats:// or tls://")
        redis_url = get_str(env, "NIMBUS_REDIS_URL", "redis://127.0.0.1:6379/0")
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"NIMBUS_REDIS_URL={redis_url!r} must start with redis://, rediss:// or unix://"
            )
        max_retries = get_int(env, "NIMBUS_ASYNC_MAX_RETRIES", 2)
        if not MAX_RETRIES[0] <= max_retries <= MAX_RETRIES[1]:
            raise ConfigError(
                f"NIMBUS_ASYNC_MAX_RETRIES={max_retries} must be between {MAX_RETRIES[0]}"
                f" and {MAX_RETRIES[1]}"
            )
        max_age = get_float(env, "NIMBUS_ASYNC_MAX_EVENT_AGE_S", 21600.0, minimum=1.0)
        if max_age > MAX_EVENT_AGE_S[1]:
            raise ConfigError(
                f"NIMBUS_ASYNC_MAX_EVENT_AGE_S={max_age:g} must be at most {MAX_EVENT_AGE_S[1]}"
            )
        max_event_kb = get_int(env, "NIMBUS_ASYNC_MAX_EVENT_KB", 256, minimum=1)
        if max_event_kb > 960:
            # NATS's default max_payload is 1 MiB; the event's headers need some of it.
            raise ConfigError(f"NIMBUS_ASYNC_MAX_EVENT_KB={max_event_kb} must be at most 960")
        return cls(
            nats_url=nats_url,
            redis_url=redis_url,
            workers=get_int(env, "NIMBUS_ASYNC_WORKERS", 16, minimum=1),
            ack_wait_s=get_float(env, "NIMBUS_ASYNC_ACK_WAIT_S", 30.0, minimum=3.0),
            max_retries=max_retries,
            max_event_age_s=max_age,
            retry_base_s=get_float(env, "NIMBUS_ASYNC_RETRY_BASE_S", 1.0, minimum=0.01),
            retry_max_s=get_float(env, "NIMBUS_ASYNC_RETRY_MAX_S", 300.0, minimum=0.01),
            max_event_bytes=max_event_kb * 1024,
            record_ttl_s=get_int(env, "NIMBUS_INVOCATION_TTL_S", 86400, minimum=60),
            dlq_max_age_s=get_float(env, "NIMBUS_DLQ_MAX_AGE_S", 1209600.0, minimum=60.0),
            caps=StreamCaps(
                events_max_bytes=get_int(env, "NIMBUS_EVENTS_MAX_MB", 1024, minimum=16) << 20,
                events_per_function=get_int(env, "NIMBUS_EVENTS_PER_FUNCTION", 100000, minimum=1),
                dlq_max_bytes=get_int(env, "NIMBUS_DLQ_MAX_MB", 256, minimum=16) << 20,
                dlq_per_function=get_int(env, "NIMBUS_DLQ_PER_FUNCTION", 10000, minimum=1),
            ),
        )
