"""Where a new instance goes. Pure: a snapshot of nodes and instances in, a node id out."""

from __future__ import annotations

from collections.abc import Iterable

from nimbus.common.model import InstanceRecord, NodeRecord


def free_memory(node: NodeRecord, instances: Iterable[InstanceRecord]) -> int:
    used = sum(i.memory_mb for i in instances if i.node_id == node.node_id)
    return node.memory_mb - used


def place(memory_mb: int, function_key: tuple[str, str], nodes: Iterable[NodeRecord], instances: Iterable[InstanceRecord]) -> str | None:
    """Best fit on memory, spreading one function's instances: fewest of its instances first,
    then the least free memory that still fits (keeps big holes for big functions)."""
    instance_list = list(instances)
    candidates: list[tuple[int, int, str]] = []
    for node in nodes:
        free = free_memory(node, instance_list)
        if free < memory_mb:
            continue
        same = sum(1 for i in instance_list if i.node_id == node.node_id and (i.namespace, i.function) == function_key)
        candidates.append((same, free, node.node_id))
    if not candidates:
        return None
    return min(candidates)[2]
