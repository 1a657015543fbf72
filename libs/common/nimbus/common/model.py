"""Records that several services read from etcd; the JSON here is the stored schema."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeGuard, TypeVar, get_args

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

LATEST = "$LATEST"


def _load(cls: type[T], raw: bytes | str | dict[str, Any]) -> T:
    data = json.loads(raw) if isinstance(raw, (bytes, str)) else raw
    # Unknown keys are ignored so an older reader survives a newer writer (add-only records).
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class FunctionConfig:
    runtime: str
    handler: str
    memory_mb: int = 128
    timeout_s: int = 3
    env: dict[str, str] = field(default_factory=dict)
    description: str = ""
    max_concurrency: int = 0
    min_instances: int = 0
    keep_alive_s: int = 600
    # Free-form labels (API v2); they never reach the function's environment.
    tags: dict[str, str] = field(default_factory=dict)
    # Calls one instance serves at the same time; records written before it existed read as 1.
    instance_concurrency: int = 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FunctionConfig:
        return _load(cls, data)


# FunctionConfig's field names, and some of its fields by name: what a create gives, what an update
# changes (only the fields it names).
ConfigField = Literal[
    "runtime",
    "handler",
    "memory_mb",
    "timeout_s",
    "env",
    "description",
    "max_concurrency",
    "min_instances",
    "keep_alive_s",
    "tags",
    "instance_concurrency",
]
_CONFIG_FIELDS = frozenset(get_args(ConfigField))


class ConfigFields(TypedDict, total=False):
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    env: dict[str, str]
    description: str
    max_concurrency: int
    min_instances: int
    keep_alive_s: int
    tags: dict[str, str]
    instance_concurrency: int


def is_config_field(name: str) -> TypeGuard[ConfigField]:
    return name in _CONFIG_FIELDS


def _dump_without_revision(record: DataclassInstance, also: tuple[str, ...] = ()) -> bytes:
    """A record as stored: `revision` is where etcd had it when read, so it is never written
    (nor the fields named in `also`)."""
    data = asdict(record)
    data.pop("revision")
    for name in also:
        data.pop(name)
    return json.dumps(data, sort_keys=True).encode()


def _load_with_revision(cls: type[T], raw: bytes, revision: int, *, has_config: bool) -> T:
    data = json.loads(raw)
    if has_config:
        data["config"] = FunctionConfig.from_dict(data["config"])
    data["revision"] = revision
    return _load(cls, data)


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    namespace: str
    name: str
    config: FunctionConfig
    code_sha256: str
    code_size: int
    created_at: str
    updated_at: str
    # Not stored: the etcd mod_revision the record was read at.
    revision: int = 0
    # Not stored: what funcmgr's check of the package found that will fail at the first call (an
    # answer to a create or code update only; see nimbus.funcmgr.package.handler_warnings).
    warnings: tuple[str, ...] = ()

    def to_json(self) -> bytes:
        return _dump_without_revision(self, also=("warnings",))

    @classmethod
    def from_json(cls, raw: bytes, revision: int = 0) -> FunctionRecord:
        return _load_with_revision(cls, raw, revision, has_config=True)


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """An immutable snapshot of a function's code and config, numbered 1, 2, 3 …"""

    namespace: str
    name: str
    version: str
    description: str
    config: FunctionConfig
    code_sha256: str
    code_size: int
    created_at: str
    # Not stored: the etcd revision it was created at (it never changes).
    revision: int = 0

    def to_json(self) -> bytes:
        return _dump_without_revision(self)

    @classmethod
    def from_json(cls, raw: bytes, revision: int = 0) -> VersionRecord:
        return _load_with_revision(cls, raw, revision, has_config=True)


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """Points to one version and may send `weight` of the calls to `routing_version`."""

    namespace: str
    name: str
    alias: str
    version: str
    routing_version: str = ""
    routing_weight: float = 0.0
    description: str = ""
    revision: int = 0

    def to_json(self) -> bytes:
        return _dump_without_revision(self)

    @classmethod
    def from_json(cls, raw: bytes, revision: int = 0) -> AliasRecord:
        return _load_with_revision(cls, raw, revision, has_config=False)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """Written by a node-agent under its lease; gone within the lease TTL when the node dies."""

    node_id: str
    address: str
    memory_mb: int
    cpus: int
    started_at: str
    # sha256 of every code package unpacked on the node, and idle warm sandboxes per runtime:
    # placement prefers a node that has what a new instance needs.
    cached_code: tuple[str, ...] = ()
    warm: dict[str, int] = field(default_factory=dict)
    # The sandbox driver: "runc", or "process" (no isolation; allowed only on purpose, and shown
    # in `nimbus admin status`).
    sandbox: str = ""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> NodeRecord:
        record = _load(cls, raw)
        return dataclasses.replace(record, cached_code=tuple(record.cached_code))


class InstanceState(StrEnum):
    STARTING = "STARTING"
    READY = "READY"
    DRAINING = "DRAINING"


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """One function instance, written by its node-agent under the node's lease."""

    instance_id: str
    node_id: str
    node_address: str
    namespace: str
    function: str
    version: str
    code_sha256: str
    # The function record's etcd revision the instance was built from;
    # a newer one means stale code or config.
    function_revision: int
    memory_mb: int
    state: str
    created_at: str
    # Calls it serves at the same time: the invokers' slot count for it.
    instance_concurrency: int = 1

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> InstanceRecord:
        return _load(cls, raw)


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What one invoker saw over its last report period. `concurrency` maps
    "namespace/function/version/revision" to the time-averaged calls in flight or queued."""

    replica: str
    period_s: float
    concurrency: dict[str, float]
    reported_at: float

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LoadReport:
        return _load(cls, raw)


def load_key(namespace: str, function: str, version: str, revision: int) -> str:
    return f"{namespace}/{function}/{version}/{revision}"
