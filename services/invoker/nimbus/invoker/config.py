"""The invoker's settings: its own, and one typed part per path (sync, events, http)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nimbus.common.config import CommonConfig, get_str
from nimbus.common.registry import API_RELEASES, parse_api_versions
from nimbus.invoker.events.config import EventsConfig
from nimbus.invoker.http.config import HttpConfig
from nimbus.invoker.sync.config import SyncConfig


@dataclass(frozen=True, slots=True)
class InvokerConfig:
    """NIMBUS_LISTEN_ADDR              gRPC listen address (default 127.0.0.1:7401)
    NIMBUS_API_VERSIONS              public API versions this replica serves, e.g. v1
                                     (default v1,v2)
    plus CommonConfig's, and those of each path, documented where each is declared:
    sync.config.SyncConfig, events.config.EventsConfig and http.config.HttpConfig.
    """

    common: CommonConfig
    listen_addr: str
    sync: SyncConfig = SyncConfig()
    events: EventsConfig = EventsConfig()
    http: HttpConfig = HttpConfig()
    api_versions: tuple[str, ...] = API_RELEASES

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> InvokerConfig:
        return cls(
            common=CommonConfig.from_env(env, "invoker"),
            listen_addr=get_str(env, "NIMBUS_LISTEN_ADDR", "127.0.0.1:7401"),
            sync=SyncConfig.from_env(env),
            events=EventsConfig.from_env(env),
            http=HttpConfig.from_env(env),
            api_versions=parse_api_versions(env),
        )
