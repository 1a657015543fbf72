"""Validation of function settings. Pure; every message names the field and the limit.

api checks what a request sets; funcmgr checks the merged config again before it writes, so a
PATCH cannot combine two valid fields into an invalid function.
"""

from __future__ import annotations

import re

from nimbus.common.errors import InvalidArgument
from nimbus.common.model import FunctionConfig

RUNTIMES = ("python3.11", "nodejs20", "provided")
MEMORY_MB = (128, 10240)
TIMEOUT_S = (1, 900)
ENV_MAX_BYTES = 4096
DESCRIPTION_MAX = 256
MAX_CONCURRENCY_MAX = 1000
# Instances kept warm per function; the scheduler holds any record to it, validated or not.
MIN_INSTANCES_MAX = MAX_CONCURRENCY_MAX
KEEP_ALIVE_S = (0, 86400)
INSTANCE_CONCURRENCY = (1, 100)
# As Lambda's tags: at most 50 per function, keys 1-128 characters, values up to 256.
TAGS_MAX = 50
TAG_KEY_MAX = 128
TAG_VALUE_MAX = 256

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_PY_HANDLER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_NODE_HANDLER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*\.[A-Za-z_$][A-Za-z0-9_$]*")
_ENV_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_RESERVED_ENV_PREFIXES = ("NIMBUS_", "AWS_LAMBDA_")


_NAMESPACE = re.compile(r"[a-z][a-z0-9-]{0,62}")


def check_namespace(namespace: str) -> None:
    if not _NAMESPACE.fullmatch(namespace):
        raise InvalidArgument(
            f"namespace: {namespace!r} must be 1-63 characters: "
            "a lowercase letter, then lowercase letters, digits or '-'"
        )


def check_name(name: str, field: str = "name") -> None:
    if not _NAME.fullmatch(name):
        raise InvalidArgument(
            f"{field}: {name!r} is not a valid function name: "
            "1-64 characters, a letter first, then letters, digits, '-' or '_'"
        )


def check_runtime(runtime: str) -> None:
    if runtime not in RUNTIMES:
        raise InvalidArgument(
            f"runtime: {runtime!r} is not supported; use one of {', '.join(RUNTIMES)}"
        )


def check_handler(runtime: str, handler: str) -> None:
    if not handler:
        raise InvalidArgument("handler: required, e.g. 'main.handler'")
    if len(handler) > 128:
        raise InvalidArgument(f"handler: {len(handler)} characters, over the limit of 128")
    if runtime == "python3.11" and not _PY_HANDLER.fullmatch(handler):
        raise InvalidArgument(
            f"handler: {handler!r} must be 'module.function' for python3.11, e.g. 'main.handler'"
        )
    if runtime == "nodejs20" and (not _NODE_HANDLER.fullmatch(handler) or ".." in handler):
        raise InvalidArgument(
            f"handler: {handler!r} must be 'file.export' for nodejs20, e.g. 'index.handler'"
        )


def check_range(field: str, value: int, bounds: tuple[int, int]) -> None:
    low, high = bounds
    if not low <= value <= high:
        raise InvalidArgument(
            f"{field}: {value} is out of range; it must be between {low} and {high}"
        )


def check_env(env: dict[str, str]) -> None:
    size = 0
    for key, value in env.items():
        if not _ENV_NAME.fullmatch(key):
            raise InvalidArgument(
                f"env: {key!r} is not a valid variable name: "
                "a letter first, then letters, digits or '_'"
            )
        if key.startswith(_RESERVED_ENV_PREFIXES):
            raise InvalidArgument(
                f"env: {key!r} uses a reserved prefix ({', '.join(_RESERVED_ENV_PREFIXES)})"
            )
        size += len(key.encode()) + len(value.encode())
    if size > ENV_MAX_BYTES:
        raise InvalidArgument(
            f"env: {size} bytes in total, over the limit of {ENV_MAX_BYTES} bytes"
        )


_TAG_KEY = re.compile(r"[A-Za-z0-9_.:/=+@ -]+")


def check_tags(tags: dict[str, str]) -> None:
    if len(tags) > TAGS_MAX:
        raise InvalidArgument(f"tags: {len(tags)} tags, over the limit of {TAGS_MAX}")
    for key, value in tags.items():
        if (
            not 1 <= len(key) <= TAG_KEY_MAX
            or not _TAG_KEY.fullmatch(key)
            or key.startswith("nimbus:")
        ):
            raise InvalidArgument(
                f"tags: key {key!r} must be 1-{TAG_KEY_MAX} letters, digits, spaces or _.:/=+@- "
                f"and not start with 'nimbus:'"
            )
        if len(value) > TAG_VALUE_MAX:
            raise InvalidArgument(
                f"tags: the value of {key!r} has {len(value)} "
                f"characters, over the limit of {TAG_VALUE_MAX}"
            )


def check_description(description: str) -> None:
    if len(description) > DESCRIPTION_MAX:
        raise InvalidArgument(
            f"description: {len(description)} characters, over the limit of {DESCRIPTION_MAX}"
        )


def check_instance_concurrency(runtime: str, value: int) -> None:
    check_range("instance_concurrency", value, INSTANCE_CONCURRENCY)
    if runtime == "provided" and value > 1:
        raise InvalidArgument(
            f"instance_concurrency: {value} is not possible for runtime 'provided'; it must be 1, "
            "because the Lambda Runtime API serves one call at a time"
        )


def check_config(config: FunctionConfig) -> None:
    """The whole config, as it will be stored."""
    check_runtime(config.runtime)
    check_handler(config.runtime, config.handler)
    check_range("memory_mb", config.memory_mb, MEMORY_MB)
    check_range("timeout_s", config.timeout_s, TIMEOUT_S)
    check_env(config.env)
    check_description(config.description)
    check_range("max_concurrency", config.max_concurrency, (0, MAX_CONCURRENCY_MAX))
    check_range("keep_alive_s", config.keep_alive_s, KEEP_ALIVE_S)
    check_tags(config.tags)
    check_instance_concurrency(config.runtime, config.instance_concurrency)
    check_range("min_instances", config.min_instances, (0, MIN_INSTANCES_MAX))
    if config.max_concurrency and config.min_instances > config.max_concurrency:
        raise InvalidArgument(
            f"min_instances: {config.min_instances} is more "
            f"than max_concurrency {config.max_concurrency}"
        )
