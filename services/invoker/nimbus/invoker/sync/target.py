"""Which code and config a call runs: $LATEST, a published version, or an alias's pick.

Pure: records in, a Target out. `draw` is a uniform random number in [0, 1) passed in so the
weighted alias split is testable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nimbus.common.errors import NotFound
from nimbus.common.model import LATEST, AliasRecord, FunctionConfig, FunctionRecord, VersionRecord


@dataclass(frozen=True, slots=True)
class Target:
    namespace: str
    function: str
    version: str
    config: FunctionConfig
    code_sha256: str
    # $LATEST: the function record's revision (changes with every update); a version: its
    # creation revision (never changes). Instances are pooled by it.
    revision: int


def latest(record: FunctionRecord) -> Target:
    return Target(
        record.namespace, record.name, LATEST, record.config, record.code_sha256, record.revision
    )


def of_version(version: VersionRecord) -> Target:
    return Target(
        version.namespace,
        version.name,
        version.version,
        version.config,
        version.code_sha256,
        version.revision,
    )


def resolve(
    record: FunctionRecord,
    qualifier: str,
    version_of: Callable[[str], VersionRecord | None],
    alias_of: Callable[[str], AliasRecord | None],
    draw: float,
) -> Target:
    qualifier = qualifier or LATEST
    if qualifier == LATEST:
        return latest(record)
    if qualifier.isdigit():
        return _version(record, qualifier, version_of)
    alias = alias_of(qualifier)
    if alias is None:
        raise NotFound(
            f"qualifier {qualifier!r} of function {record.name!r} is neither a version nor an alias"
        )
    chosen = alias.version
    if alias.routing_version and draw < alias.routing_weight:
        chosen = alias.routing_version
    if chosen == LATEST:
        return latest(record)
    return _version(record, chosen, version_of)


def _version(
    record: FunctionRecord, number: str, version_of: Callable[[str], VersionRecord | None]
) -> Target:
    version = version_of(number)
    if version is None:
        raise NotFound(f"version {number!r} of function {record.name!r} not found")
    return of_version(version)
