"""Nimbus's Python SDK: a small synchronous client over the public REST API, stdlib only."""

from nimbus.client.client import DEFAULT_TIMEOUT_S, Client, FunctionError, InvokeResult
from nimbus.client.config import ClientConfig, find_credentials_file, resolve_config
from nimbus.client.errors import ConfigError, NimbusApiError, NimbusClientError, NimbusConnectionError
from nimbus.client.zipper import zip_directory

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "Client",
    "ClientConfig",
    "ConfigError",
    "FunctionError",
    "InvokeResult",
    "NimbusApiError",
    "NimbusClientError",
    "NimbusConnectionError",
    "find_credentials_file",
    "resolve_config",
    "zip_directory",
]
