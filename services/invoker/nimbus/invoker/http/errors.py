"""The listener's error bodies: {"code", "status", "message", "details"}, compact, as the gateway
answers the API's errors (the gRPC code and its name), with the matching HTTP status. Shared by
REST invokes, the HTTP triggers and the server's own errors (a malformed request, a handler that
raised)."""

from __future__ import annotations

import json

import grpc
from nimbus.common.errors import NimbusError
from nimbus.invoker.http.server import HttpResponse

_JSON = "application/json"
# The gRPC code (its number) of each status the server answers by itself.
_GRPC_CODES = {400: 3, 404: 5, 413: 11, 431: 3, 500: 13}
_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


def error_response(status: int, message: str, grpc_code: int = 2) -> HttpResponse:
    name = _NAMES.get(grpc_code, "UNKNOWN")
    error = {"code": grpc_code, "status": name, "message": message, "details": []}
    body = json.dumps(error, separators=(",", ":")).encode()
    return HttpResponse(status, [("content-type", _JSON)], body)


def nimbus_error_response(err: NimbusError) -> HttpResponse:
    return error_response(err.http_status, err.message, int(err.code.value[0]))


def http_status_error(status: int, message: str) -> HttpResponse:
    return error_response(status, message, _GRPC_CODES.get(status, 2))
