import grpc
import pytest
from nimbus.common import keys
from nimbus.common.auth import parse_bearer
from nimbus.common.config import CommonConfig, ConfigError
from nimbus.common.errors import (
    AlreadyExists,
    Conflict,
    InvalidArgument,
    NotFound,
    Throttled,
    TooLarge,
    Unauthenticated,
    Unavailable,
    from_rpc_error,
)
from nimbus.common.model import FunctionConfig, FunctionRecord


@pytest.mark.parametrize(
    "cls, status",
    [
        (InvalidArgument, 400),
        (Unauthenticated, 401),
        (NotFound, 404),
        (AlreadyExists, 409),
        (Conflict, 409),
        (TooLarge, 413),
        (Throttled, 429),
        (Unavailable, 503),
    ],
)
def test_error_http_status(cls, status):
    assert cls("x").http_status == status


class FakeRpcError(grpc.RpcError):
    def __init__(self, code):
        self._code = code

    def code(self):
        return self._code

    def details(self):
        return "boom"


@pytest.mark.parametrize("cls", [InvalidArgument, NotFound, AlreadyExists, Throttled, Unavailable])
def test_errors_round_trip_through_status_codes(cls):
    err = from_rpc_error(FakeRpcError(cls.code))
    assert type(err) is cls and err.message == "boom"


def test_function_keys_round_trip():
    key = keys.function("tenant", "fn-1")
    assert key.startswith(keys.functions_prefix("tenant"))
    assert keys.parse_function(key) == ("tenant", "fn-1")


def test_record_json_round_trip_keeps_revision_out_of_storage():
    record = FunctionRecord(
        "ns", "f", FunctionConfig("python3.11", "main.h", env={"A": "1"}), "sha", 10, "c", "u", 42
    )
    raw = record.to_json()
    assert b"revision" not in raw
    assert FunctionRecord.from_json(raw, 42) == record


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer ", "Bearer"])
def test_bad_bearer_headers(header):
    with pytest.raises(Unauthenticated):
        parse_bearer(header)


def test_common_config_defaults_and_errors():
    cfg = CommonConfig.from_env({"NIMBUS_HOME": "/tmp/h"}, "api")
    assert (cfg.etcd_host, cfg.etcd_port, cfg.replica) == ("127.0.0.1", 2379, "api")
    with pytest.raises(ConfigError, match="NIMBUS_ETCD_ENDPOINT"):
        CommonConfig.from_env({"NIMBUS_ETCD_ENDPOINT": "nohost"}, "api")
    with pytest.raises(ConfigError, match="NIMBUS_DRAIN_S"):
        CommonConfig.from_env({"NIMBUS_DRAIN_S": "soon"}, "api")


@pytest.mark.parametrize(
    "raw, expected",
    [(b"", b"{}"), (b"  ", b"{}"), (b'{"a":1}', b'{"a":1}'), (b"[1]", b"[1]"), (b"3", b"3")],
)
def test_events_are_json_or_empty(raw, expected):
    from nimbus.invoker.sync.invoke import check_event

    assert check_event(raw) == expected


def test_an_event_that_is_not_json_names_the_body():
    from nimbus.invoker.sync.invoke import check_event

    with pytest.raises(InvalidArgument, match="^body: "):
        check_event(b"name=Ada")
