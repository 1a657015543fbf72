from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import ConfigError, get_float, get_int, get_str

# A request id stays "counted" at least this long: longer than any redelivery, and longer than the
# log stream keeps a record, so even a consumer re-created from the stream's
# start counts nothing twice.
MIN_SEEN_TTL_S = 2 * 86400

# The defaults (a slotted dataclass keeps no class attributes to read them from).
_NATS_URL = "nats://127.0.0.1:4222"
_REDIS_URL = "redis://127.0.0.1:6379/0"
_RETENTION_H = 72.0
_MAX_MB = 1024
_BATCH = 256
_ACK_WAIT_S = 30.0


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """NIMBUS_NATS_URL              NATS holding the log and usage streams (default nats://127.0.0.1:4222)
    NIMBUS_REDIS_URL                Redis for usage and per-minute metrics (default redis://127.0.0.1:6379/0)
    NIMBUS_LOG_RETENTION_H          how long the log streams keep records (default 72)
    NIMBUS_LOG_MAX_MB               the most disk each namespace's log stream may use (default 1024)
    NIMBUS_METER_BATCH              log messages the meter fetches and applies at once (default 256)
    NIMBUS_METER_ACK_WAIT_S         when the stream redelivers a message a meter did not ack
                                    (default 30)
    """

    nats_url: str = _NATS_URL
    redis_url: str = _REDIS_URL
    log_retention_h: float = _RETENTION_H
    log_max_mb: int = _MAX_MB
    batch: int = _BATCH
    ack_wait_s: float = _ACK_WAIT_S

    @property
    def seen_ttl_s(self) -> int:
        return max(MIN_SEEN_TTL_S, int(self.log_retention_h * 3600) + 86400)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MeterConfig:
        redis_url = get_str(env, "NIMBUS_REDIS_URL", _REDIS_URL)
        if not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"NIMBUS_REDIS_URL={redis_url!r} must start with redis://, rediss:// or unix://"
            )
        return cls(
            nats_url=get_str(env, "NIMBUS_NATS_URL", _NATS_URL),
            redis_url=redis_url,
            log_retention_h=get_float(env, "NIMBUS_LOG_RETENTION_H", _RETENTION_H, minimum=0.1),
            log_max_mb=get_int(env, "NIMBUS_LOG_MAX_MB", _MAX_MB, minimum=1),
            batch=get_int(env, "NIMBUS_METER_BATCH", _BATCH, minimum=1),
            ack_wait_s=get_float(env, "NIMBUS_METER_ACK_WAIT_S", _ACK_WAIT_S, minimum=1.0),
        )
