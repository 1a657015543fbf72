"""The one error hierarchy. Core code raises only these; each edge translates them.

Each class carries its gRPC status code and the HTTP status DESIGN.md promises for it, so the gRPC
interceptor, Envoy's transcoder and the client adapters all agree.
"""

from __future__ import annotations

import grpc


class NimbusError(Exception):
    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(NimbusError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class NotFound(NimbusError):
    code = grpc.StatusCode.NOT_FOUND
    http_status = 404


class AlreadyExists(NimbusError):
    code = grpc.StatusCode.ALREADY_EXISTS
    http_status = 409


class Conflict(NimbusError):
    """A stale expected_revision or a state that forbids the change."""

    code = grpc.StatusCode.ABORTED
    http_status = 409


class FailedPrecondition(NimbusError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 400


class FunctionInitFailed(FailedPrecondition):
    """The function's code could not be loaded (import error, init timeout). Crosses services as
    FAILED_PRECONDITION with a message of the form PREFIX + "<errorType>: <errorMessage>"."""

    PREFIX = "function init failed: "

    def __init__(self, error_type: str, error_message: str) -> None:
        super().__init__(f"{self.PREFIX}{error_type}: {error_message}")
        self.error_type = error_type
        self.error_message = error_message

    @classmethod
    def parse(cls, message: str) -> FunctionInitFailed | None:
        if not message.startswith(cls.PREFIX):
            return None
        error_type, _, error_message = message[len(cls.PREFIX) :].partition(": ")
        return cls(error_type, error_message)


class Unauthenticated(NimbusError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class PermissionDenied(NimbusError):
    code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403


class TooLarge(NimbusError):
    # OUT_OF_RANGE is the status Envoy's transcoder turns into 400; a body over the limit is 413
    # at the gateway's own limit, and this class keeps the 413 for REST clients of the core.
    code = grpc.StatusCode.OUT_OF_RANGE
    http_status = 413


class Throttled(NimbusError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        # Sent as the Retry-After header (REST) / retry-after metadata (gRPC).
        self.retry_after_s = retry_after_s


class Unavailable(NimbusError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class DeadlineExceeded(NimbusError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


_BY_CODE: dict[grpc.StatusCode, type[NimbusError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        FailedPrecondition,
        NotFound,
        AlreadyExists,
        Conflict,
        Unauthenticated,
        PermissionDenied,
        TooLarge,
        Throttled,
        Unavailable,
        DeadlineExceeded,
    )
}


def from_rpc_error(err: grpc.aio.AioRpcError | grpc.RpcError) -> NimbusError:
    """Turns a peer's status back into our class, so errors round-trip between services."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else str(err)
    return from_status(code, details)


_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_number(err: NimbusError) -> int:
    """The numeric status code,
    for errors carried inside a message rather than as a call's status."""
    return int(err.code.value[0])


def from_status_number(number: int, details: str) -> NimbusError:
    return from_status(_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN), details)


def from_status(code: grpc.StatusCode, details: str | None) -> NimbusError:
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        init_failure = FunctionInitFailed.parse(details or "")
        if init_failure is not None:
            return init_failure
    cls = _BY_CODE.get(code, NimbusError)
    return cls(details or code.name)
