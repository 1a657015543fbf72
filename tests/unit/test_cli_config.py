"""Config resolution for the SDK and CLI: arguments > environment > credentials file > default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nimbus.client import Client, ConfigError, find_credentials_file, resolve_config


def write_creds(
    directory: Path, endpoint: str | None = "http://file:1", api_key: str | None = "file-key"
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "credentials.json"
    data = {k: v for k, v in (("endpoint", endpoint), ("api_key", api_key)) if v is not None}
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("args", "env", "want_endpoint", "want_key"),
    [
        ({}, {}, "http://file:1", "file-key"),
        ({}, {"NIMBUS_ENDPOINT": "http://env:2"}, "http://env:2", "file-key"),
        ({}, {"NIMBUS_API_KEY": "env-key"}, "http://file:1", "env-key"),
        (
            {"endpoint": "http://arg:3", "api_key": "arg-key"},
            {"NIMBUS_ENDPOINT": "http://env:2", "NIMBUS_API_KEY": "env-key"},
            "http://arg:3",
            "arg-key",
        ),
        ({"api_key": "arg-key"}, {"NIMBUS_ENDPOINT": "http://env:2"}, "http://env:2", "arg-key"),
        # Empty values count as unset.
        (
            {"endpoint": ""},
            {"NIMBUS_ENDPOINT": "", "NIMBUS_API_KEY": " "},
            "http://file:1",
            "file-key",
        ),
    ],
)
def test_resolution_order(
    tmp_path: Path, args: dict, env: dict, want_endpoint: str, want_key: str
) -> None:
    write_creds(tmp_path / ".nimbus")
    cfg = resolve_config(env=env, cwd=tmp_path, **args)
    assert (cfg.endpoint, cfg.api_key) == (want_endpoint, want_key)


def test_sources_are_reported(tmp_path: Path) -> None:
    path = write_creds(tmp_path / ".nimbus")
    cfg = resolve_config(env={"NIMBUS_API_KEY": "k"}, cwd=tmp_path)
    assert cfg.endpoint_source == str(path)
    assert cfg.api_key_source == "NIMBUS_API_KEY"
    cfg = resolve_config(env={}, cwd=tmp_path, endpoint="http://x:1")
    assert cfg.endpoint_source == "argument"


def test_default_endpoint_without_file(tmp_path: Path) -> None:
    cfg = resolve_config(env={}, cwd=tmp_path)
    assert cfg.endpoint == "http://127.0.0.1:8080"
    assert cfg.api_key is None
    assert cfg.endpoint_source == "default"


def test_default_endpoint_honours_gateway_port(tmp_path: Path) -> None:
    cfg = resolve_config(env={"NIMBUS_GATEWAY_PORT": "9099"}, cwd=tmp_path)
    assert cfg.endpoint == "http://127.0.0.1:9099"


def test_bad_gateway_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="NIMBUS_GATEWAY_PORT"):
        resolve_config(env={"NIMBUS_GATEWAY_PORT": "eighty"}, cwd=tmp_path)


def test_walks_up_to_find_the_file(tmp_path: Path) -> None:
    path = write_creds(tmp_path / ".nimbus")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_credentials_file({}, deep) == path
    assert resolve_config(env={}, cwd=deep).api_key == "file-key"


def test_nearest_file_wins(tmp_path: Path) -> None:
    write_creds(tmp_path / ".nimbus", api_key="outer")
    inner = write_creds(tmp_path / "proj" / ".nimbus", api_key="inner")
    assert find_credentials_file({}, tmp_path / "proj") == inner


def test_nimbus_home_is_used_and_not_walked(tmp_path: Path) -> None:
    write_creds(tmp_path / ".nimbus", api_key="walked")
    home = tmp_path / "elsewhere"
    write_creds(home, api_key="home")
    cfg = resolve_config(env={"NIMBUS_HOME": str(home)}, cwd=tmp_path)
    assert cfg.api_key == "home"
    # A NIMBUS_HOME without a credentials file means "no file", not "look elsewhere".
    cfg = resolve_config(env={"NIMBUS_HOME": str(tmp_path / "empty")}, cwd=tmp_path)
    assert cfg.api_key is None


def test_relative_nimbus_home_is_relative_to_cwd(tmp_path: Path) -> None:
    write_creds(tmp_path / "state", api_key="rel")
    assert resolve_config(env={"NIMBUS_HOME": "state"}, cwd=tmp_path).api_key == "rel"


def test_file_is_not_read_when_args_and_env_decide(tmp_path: Path) -> None:
    (tmp_path / ".nimbus").mkdir()
    (tmp_path / ".nimbus" / "credentials.json").write_text("{not json")
    cfg = resolve_config(env={"NIMBUS_API_KEY": "k"}, cwd=tmp_path, endpoint="http://a:1")
    assert cfg.api_key == "k"


def test_bad_file_names_the_path(tmp_path: Path) -> None:
    (tmp_path / ".nimbus").mkdir()
    path = tmp_path / ".nimbus" / "credentials.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="credentials.json is not valid JSON"):
        resolve_config(env={}, cwd=tmp_path)
    path.write_text('["a"]')
    with pytest.raises(ConfigError, match="JSON object"):
        resolve_config(env={}, cwd=tmp_path)
    path.write_text('{"api_key": 5}')
    with pytest.raises(ConfigError, match="api_key must be a string"):
        resolve_config(env={}, cwd=tmp_path)


def test_partial_file(tmp_path: Path) -> None:
    write_creds(tmp_path / ".nimbus", endpoint=None, api_key="only-key")
    cfg = resolve_config(env={}, cwd=tmp_path)
    assert cfg.endpoint == "http://127.0.0.1:8080"
    assert cfg.api_key == "only-key"


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("https://nimbus.example.com", "https://nimbus.example.com"),
        ("http://proxy:80/nimbus/", "http://proxy:80/nimbus"),
    ],
)
def test_endpoint_normalised(tmp_path: Path, given: str, want: str) -> None:
    assert resolve_config(env={}, cwd=tmp_path, endpoint=given).endpoint == want


@pytest.mark.parametrize("bad", ["ftp://host:21", "http://", "http://host:notaport"])
def test_bad_endpoint(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError, match="endpoint"):
        resolve_config(env={}, cwd=tmp_path, endpoint=bad)


def test_client_takes_env_and_cwd(tmp_path: Path) -> None:
    write_creds(tmp_path / ".nimbus", endpoint="http://127.0.0.1:1234", api_key="k1")
    client = Client(env={}, cwd=tmp_path)
    assert client.endpoint == "http://127.0.0.1:1234"
    assert client.config.api_key == "k1"
    client = Client(endpoint="http://127.0.0.1:5", api_key="k2", env={}, cwd=tmp_path)
    assert (client.endpoint, client.config.api_key) == ("http://127.0.0.1:5", "k2")
