"""The HTTP listener's settings (a part of InvokerConfig)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import get_hostport, get_int


@dataclass(frozen=True, slots=True)
class HttpConfig:
    """NIMBUS_HTTP_LISTEN_ADDR         host:port of the HTTP/1.1 listener: REST invokes
                                     (/v1/functions/…), HTTP triggers (/fn/…) and /healthz; empty
                                     turns it off (default empty)
    NIMBUS_HTTP_MAX_BODY_KB          largest request body on it (default 6144)
    """

    # Empty: no listener.
    host: str = ""
    port: int = 0
    max_body_bytes: int = 6144 * 1024

    @property
    def enabled(self) -> bool:
        return bool(self.host)

    @property
    def listen_addr(self) -> str:
        """host:port as configured, or "" when off (the registry tells the gateway this)."""
        return f"{self.host}:{self.port}" if self.host else ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HttpConfig:
        host, port = "", 0
        if env.get("NIMBUS_HTTP_LISTEN_ADDR", "").strip():
            host, port = get_hostport(env, "NIMBUS_HTTP_LISTEN_ADDR", "")
        return cls(
            host=host,
            port=port,
            max_body_bytes=get_int(env, "NIMBUS_HTTP_MAX_BODY_KB", 6144, minimum=1) * 1024,
        )
