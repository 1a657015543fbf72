"""Where the SDK and CLI find the gateway and the API key.

Each value is resolved on its own, first match wins:

1. the explicit argument (`Client(endpoint=..., api_key=...)`, the CLI's `--endpoint` /
   `--api-key`);
2. the environment: `NIMBUS_ENDPOINT`, `NIMBUS_API_KEY`;
3. the credentials file `{"endpoint": ..., "api_key": ...}` written by the first `make up`:
   `$NIMBUS_HOME/credentials.json` when NIMBUS_HOME is set (relative to `cwd`), otherwise the
   nearest `.nimbus/credentials.json` in `cwd` or one of its parents;
4. for the endpoint only, `http://127.0.0.1:$NIMBUS_GATEWAY_PORT` (port 8080 by default).

Empty values count as unset. The environment and the working directory are passed in, so nothing
here reads `os.environ` and tests can use a plain dict and a temporary directory.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nimbus.client.errors import ConfigError

DEFAULT_GATEWAY_PORT = 8080
CREDENTIALS_FILE = "credentials.json"
HOME_DIR_NAME = ".nimbus"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    endpoint: str
    api_key: str | None
    # Where each value came from ("argument",
    # "NIMBUS_ENDPOINT", a file path, "default"), for messages.
    endpoint_source: str
    api_key_source: str | None


def find_credentials_file(env: Mapping[str, str], cwd: Path) -> Path | None:
    """The credentials file to use, or None when there is none."""
    home = env.get("NIMBUS_HOME", "").strip()
    if home:
        path = (cwd / Path(home).expanduser()) / CREDENTIALS_FILE
        return path if path.is_file() else None
    for directory in (cwd, *cwd.parents):
        path = directory / HOME_DIR_NAME / CREDENTIALS_FILE
        if path.is_file():
            return path
    return None


def load_credentials(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object with endpoint and api_key")
    out: dict[str, str] = {}
    for field in ("endpoint", "api_key"):
        value = data.get(field)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ConfigError(f"{path}: {field} must be a string, got {value!r}")
        out[field] = value.strip()
    return out


def normalize_endpoint(endpoint: str, source: str) -> str:
    """`host:port` becomes `http://host:port`; a trailing slash goes; other schemes are refused."""
    text = endpoint.strip()
    if "://" not in text:
        text = "http://" + text
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(
            f"endpoint {endpoint!r} from {source} is not an http(s) URL like http://127.0.0.1:8080"
        )
    try:
        parsed.port  # noqa: B018 - validates the port
    except ValueError as e:
        raise ConfigError(f"endpoint {endpoint!r} from {source}: {e}") from e
    return text.rstrip("/")


def default_endpoint(env: Mapping[str, str]) -> str:
    port = env.get("NIMBUS_GATEWAY_PORT", "").strip() or str(DEFAULT_GATEWAY_PORT)
    if not port.isdigit():
        raise ConfigError(f"NIMBUS_GATEWAY_PORT={port!r} is not a port number")
    return f"http://127.0.0.1:{port}"


def resolve_config(
    *,
    env: Mapping[str, str],
    cwd: Path,
    endpoint: str | None = None,
    api_key: str | None = None,
) -> ClientConfig:
    endpoint_value, endpoint_source = _first(
        (endpoint, "argument"), (env.get("NIMBUS_ENDPOINT"), "NIMBUS_ENDPOINT")
    )
    key_value, key_source = _first(
        (api_key, "argument"), (env.get("NIMBUS_API_KEY"), "NIMBUS_API_KEY")
    )
    if endpoint_value is None or key_value is None:
        path = find_credentials_file(env, cwd)
        if path is not None:
            creds = load_credentials(path)
            if endpoint_value is None and "endpoint" in creds:
                endpoint_value, endpoint_source = creds["endpoint"], str(path)
            if key_value is None and "api_key" in creds:
                key_value, key_source = creds["api_key"], str(path)
    if endpoint_value is None:
        endpoint_value, endpoint_source = default_endpoint(env), "default"
    return ClientConfig(
        endpoint=normalize_endpoint(endpoint_value, endpoint_source or "default"),
        api_key=key_value,
        endpoint_source=endpoint_source or "default",
        api_key_source=key_source,
    )


def _first(*candidates: tuple[str | None, str]) -> tuple[str | None, str | None]:
    for value, source in candidates:
        if value is not None and value.strip():
            return value.strip(), source
    return None, None
