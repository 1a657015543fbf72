"""The SDK's one error root and the translation of a gateway error response into it.

The gateway (Envoy's grpc_json_transcoder) answers an error with a JSON body `{"code": <gRPC code>,
"message": str, "details": []}` and the matching HTTP status. Anything that is not that shape
(Envoy's own "no healthy upstream" text, a proxy's HTML page) still becomes a `NimbusApiError`, with
the best message that can be recovered from it.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from enum import IntEnum
from typing import Any


class GrpcCode(IntEnum):
    """The gRPC status codes, numbered as grpc.StatusCode (the SDK runs without grpcio)."""

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# gRPC status codes by number, for messages and for `NimbusApiError.code_name`.
GRPC_CODE_NAMES: dict[int, str] = {c.value: c.name for c in GrpcCode}

# The gRPC code an HTTP status stands for, when the body does not say (DESIGN.md's table).
_CODE_BY_HTTP_STATUS: dict[int, int] = {
    400: GrpcCode.INVALID_ARGUMENT,
    401: GrpcCode.UNAUTHENTICATED,
    403: GrpcCode.PERMISSION_DENIED,
    404: GrpcCode.NOT_FOUND,
    409: GrpcCode.ALREADY_EXISTS,
    413: GrpcCode.OUT_OF_RANGE,
    429: GrpcCode.RESOURCE_EXHAUSTED,
    499: GrpcCode.CANCELLED,
    500: GrpcCode.INTERNAL,
    501: GrpcCode.UNIMPLEMENTED,
    502: GrpcCode.UNAVAILABLE,
    503: GrpcCode.UNAVAILABLE,
    504: GrpcCode.DEADLINE_EXCEEDED,
}


class NimbusClientError(Exception):
    """Root of every error the SDK raises."""


class ConfigError(NimbusClientError):
    """The endpoint, key or credentials file is unusable; the message names the source."""


class NimbusConnectionError(NimbusClientError):
    """The gateway could not be reached (refused, DNS, reset) or did not answer in time."""

    def __init__(self, endpoint: str, reason: str, *, refused: bool = False) -> None:
        super().__init__(f"cannot reach {endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason
        self.refused = refused


class StreamingUnavailable(NimbusClientError):
    """The chunked gRPC upload cannot run here: grpcio,
    protobuf or the nimbus.api.v1 stubs are missing."""


class NimbusApiError(NimbusClientError):
    """The gateway answered with an error status; `message` is the server's own message."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        details: list[Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{message} (HTTP {status})")
        self.status = status
        self.code = int(code)
        self.message = message
        self.details = details if details is not None else []
        self.request_id = request_id

    @property
    def code_name(self) -> str:
        return GRPC_CODE_NAMES.get(self.code, str(self.code))

    def __repr__(self) -> str:
        return f"NimbusApiError(status={self.status}, code={self.code}, message={self.message!r})"


def error_from_response(
    status: int, reason: str, headers: Mapping[str, str], body: bytes
) -> NimbusApiError:
    """Builds the error for a non-2xx response. `headers` has lower-case names."""
    code: int = _CODE_BY_HTTP_STATUS.get(status, GrpcCode.UNKNOWN)
    message = ""
    details: list[Any] = []
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict) and ("message" in data or "code" in data):
        raw_code = data.get("code")
        if isinstance(raw_code, int) or (isinstance(raw_code, str) and raw_code.isdigit()):
            code = int(raw_code)
        message = str(data.get("message") or "")
        raw_details = data.get("details")
        if isinstance(raw_details, list):
            details = raw_details
    else:
        grpc_status = headers.get("grpc-status", "")
        if grpc_status.isdigit():
            code = int(grpc_status)
        grpc_message = headers.get("grpc-message", "")
        if grpc_message:
            message = urllib.parse.unquote(grpc_message)
        elif body:
            message = _text_excerpt(body)
    if not message:
        message = reason or GRPC_CODE_NAMES.get(code, "error")
    return NimbusApiError(
        status, code, message, details=details, request_id=headers.get("x-nimbus-request-id")
    )


def _text_excerpt(body: bytes, limit: int = 300) -> str:
    text = body.decode("utf-8", errors="replace").strip()
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
