"""Nimbus's Python SDK: a small synchronous client over the public REST API, stdlib only.

Large code packages go by the gRPC streaming upload in `nimbus.client.upload` (also reachable as
`Client.upload_function` / `Client.upload_code`), which imports grpcio on first use only."""

from nimbus.client.client import DEFAULT_TIMEOUT_S, Client, FunctionError, InvokeResult
from nimbus.client.config import ClientConfig, find_credentials_file, resolve_config
from nimbus.client.errors import (
    ConfigError,
    NimbusApiError,
    NimbusClientError,
    NimbusConnectionError,
    StreamingUnavailable,
)
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
    "StreamingUnavailable",
    "find_credentials_file",
    "resolve_config",
    "zip_directory",
]
