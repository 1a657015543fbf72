import pytest
from nimbus.common import validation
from nimbus.common.errors import InvalidArgument
from nimbus.common.model import FunctionConfig


def cfg(**over):
    base = dict(runtime="python3.11", handler="main.handler", memory_mb=128, timeout_s=3)
    base.update(over)
    return FunctionConfig(**base)


@pytest.mark.parametrize("name", ["a", "hello", "A-b_c9", "x" * 64])
def test_valid_names(name):
    validation.check_name(name)


@pytest.mark.parametrize("name", ["", "1abc", "-a", "a b", "a/b", "x" * 65, "é"])
def test_invalid_names_name_the_field(name):
    with pytest.raises(InvalidArgument, match="^name: "):
        validation.check_name(name)


@pytest.mark.parametrize(
    "over, field",
    [
        (dict(runtime="python2.7"), "runtime"),
        (dict(handler="main"), "handler"),
        (dict(handler="main.handler()"), "handler"),
        (dict(runtime="nodejs20", handler="index"), "handler"),
        (dict(memory_mb=127), "memory_mb"),
        (dict(memory_mb=10241), "memory_mb"),
        (dict(timeout_s=0), "timeout_s"),
        (dict(timeout_s=901), "timeout_s"),
        (dict(env={"1BAD": "x"}), "env"),
        (dict(env={"NIMBUS_X": "x"}), "env"),
        (dict(env={"BIG": "x" * 5000}), "env"),
        (dict(description="d" * 257), "description"),
        (dict(max_concurrency=-1), "max_concurrency"),
        (dict(min_instances=-1), "min_instances"),
        (dict(max_concurrency=2, min_instances=3), "min_instances"),
    ],
)
def test_invalid_config_names_the_field(over, field):
    with pytest.raises(InvalidArgument, match=f"^{field}: "):
        validation.check_config(cfg(**over))


@pytest.mark.parametrize(
    "over",
    [
        {},
        dict(runtime="nodejs20", handler="index.handler"),
        dict(runtime="nodejs20", handler="src/app.main"),
        dict(runtime="provided", handler="anything"),
        dict(memory_mb=10240, timeout_s=900, env={"A_B": "1"}),
        dict(max_concurrency=5, min_instances=5),
    ],
)
def test_valid_configs(over):
    validation.check_config(cfg(**over))


def test_range_message_names_the_limits():
    with pytest.raises(InvalidArgument, match="between 128 and 10240"):
        validation.check_config(cfg(memory_mb=64))


@pytest.mark.parametrize("value", [0, 101, -1])
def test_instance_concurrency_out_of_range(value):
    with pytest.raises(InvalidArgument) as err:
        validation.check_config(cfg(instance_concurrency=value))
    assert (
        str(err.value)
        == f"instance_concurrency: {value} is out of range; it must be between 1 and 100"
    )


@pytest.mark.parametrize("value", [1, 10, 100])
def test_instance_concurrency_in_range(value):
    validation.check_config(cfg(instance_concurrency=value))
    validation.check_config(
        cfg(runtime="nodejs20", handler="index.handler", instance_concurrency=value)
    )


def test_provided_runtime_serves_one_call_at_a_time():
    validation.check_config(cfg(runtime="provided", handler="bootstrap", instance_concurrency=1))
    with pytest.raises(
        InvalidArgument,
        match=(
            r"^instance_concurrency: 2 .*'provided'"
            r".*Lambda Runtime API serves one call at a time"
        ),
    ):
        validation.check_config(
            cfg(runtime="provided", handler="bootstrap", instance_concurrency=2)
        )


def test_instance_concurrency_defaults_to_one_for_old_records_and_old_writers():
    from nimbus.common.convert import config_from_pb, config_to_pb
    from nimbus.internal.v1 import types_pb2

    assert (
        FunctionConfig.from_dict({"runtime": "python3.11", "handler": "m.h"}).instance_concurrency
        == 1
    )
    assert config_from_pb(types_pb2.FunctionConfig(runtime="python3.11")).instance_concurrency == 1
    assert config_from_pb(config_to_pb(cfg(instance_concurrency=7))).instance_concurrency == 7
