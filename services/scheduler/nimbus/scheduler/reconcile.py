"""Finds instances that should no longer exist. Pure: records in, instances out."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from nimbus.common.model import LATEST, FunctionRecord, InstanceRecord


def stale_instances(
    instances: Iterable[InstanceRecord],
    functions: Mapping[tuple[str, str], FunctionRecord],
    versions: Collection[tuple[str, str, str]],
) -> list[InstanceRecord]:
    """Instances of deleted functions or versions, and $LATEST instances built from an older
    config or code. `versions` holds (namespace, function, version) of every published version.

    The node finishes the call in flight before it destroys an instance, so an update never cuts
    a running call short.
    """
    stale = []
    for instance in instances:
        record = functions.get((instance.namespace, instance.function))
        if record is None:
            stale.append(instance)
        elif instance.version == LATEST:
            if instance.function_revision < record.revision:
                stale.append(instance)
        elif (instance.namespace, instance.function, instance.version) not in versions:
            stale.append(instance)
    return stale
