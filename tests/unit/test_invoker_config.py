"""The invoker's config: InvokerConfig and its per-path parts (sync, events, http), each parsed
from the documented example env, with errors that name the variable."""

import pytest
from nimbus.common.config import ConfigError
from nimbus.invoker.config import InvokerConfig
from nimbus.invoker.events.config import EventsConfig
from nimbus.invoker.http.config import HttpConfig
from nimbus.invoker.sync.config import SyncConfig


def test_http_config_documented_example_and_errors():
    cfg = HttpConfig.from_env(
        {"NIMBUS_HTTP_LISTEN_ADDR": " 127.0.0.1:9000 ", "NIMBUS_HTTP_MAX_BODY_KB": "1024"}
    )
    assert (cfg.host, cfg.port, cfg.max_body_bytes) == ("127.0.0.1", 9000, 1024 * 1024)
    assert cfg.enabled and cfg.listen_addr == "127.0.0.1:9000"
    off = HttpConfig.from_env({"NIMBUS_HTTP_LISTEN_ADDR": ""})
    assert off == HttpConfig.from_env({}) == HttpConfig()
    assert not off.enabled and off.listen_addr == ""
    for name, value in (("NIMBUS_HTTP_LISTEN_ADDR", "nowhere"), ("NIMBUS_HTTP_MAX_BODY_KB", "0")):
        with pytest.raises(ConfigError, match=name):
            HttpConfig.from_env({name: value})


def test_sync_config_documented_example_and_errors():
    cfg = SyncConfig.from_env(
        {
            "NIMBUS_SCHEDULER_ADDR": "127.0.0.1:7601",
            "NIMBUS_QUEUE_WAIT_S": "2.5",
            "NIMBUS_MAX_INSTANCES_PER_FN": "8",
            "NIMBUS_REDIS_URL": "redis://127.0.0.1:6380/1",
            "NIMBUS_NAMESPACE_CONCURRENCY": "100",
        }
    )
    assert cfg == SyncConfig("127.0.0.1:7601", 2.5, 8, "redis://127.0.0.1:6380/1", 100)
    assert SyncConfig.from_env({}) == SyncConfig()
    for name, value in (("NIMBUS_QUEUE_WAIT_S", "0"), ("NIMBUS_MAX_INSTANCES_PER_FN", "0")):
        with pytest.raises(ConfigError, match=name):
            SyncConfig.from_env({name: value})


def test_invoker_config_holds_one_part_per_path():
    env = {
        "NIMBUS_LISTEN_ADDR": "127.0.0.1:7411",
        "NIMBUS_QUEUE_WAIT_S": "3",
        "NIMBUS_ASYNC_WORKERS": "4",
        "NIMBUS_HTTP_LISTEN_ADDR": "127.0.0.1:7412",
        "NIMBUS_API_VERSIONS": "v1",
    }
    cfg = InvokerConfig.from_env(env)
    assert cfg.listen_addr == "127.0.0.1:7411"
    assert cfg.sync == SyncConfig.from_env(env) and cfg.sync.queue_wait_s == 3.0
    assert cfg.events == EventsConfig.from_env(env) and cfg.events.workers == 4
    assert cfg.http == HttpConfig.from_env(env) and cfg.http.listen_addr == "127.0.0.1:7412"
    assert cfg.api_versions == ("v1",)
