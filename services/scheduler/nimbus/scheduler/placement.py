"""Where a new instance goes. Pure: a snapshot of nodes and instances in, a node id out."""

from __future__ import annotations

from collections.abc import Iterable

from nimbus.common.model import InstanceRecord, NodeRecord


def free_memory(node: NodeRecord, instances: Iterable[InstanceRecord]) -> int:
    used = sum(i.memory_mb for i in instances if i.node_id == node.node_id)
    return node.memory_mb - used


def place(
    memory_mb: int,
    function_key: tuple[str, str],
    nodes: Iterable[NodeRecord],
    instances: Iterable[InstanceRecord],
    code_sha256: str = "",
    runtime: str = "",
) -> str | None:
    """Among the nodes with room: fewest of this function's instances first (spread), then a node
    that already holds the code or a warm sandbox of the runtime (a faster cold start), then the
    least free memory that still fits (best fit keeps big holes for big functions)."""
    instance_list = list(instances)
    candidates: list[tuple[int, int, int, str]] = []
    for node in nodes:
        free = free_memory(node, instance_list)
        if free < memory_mb:
            continue
        same = sum(
            1
            for i in instance_list
            if i.node_id == node.node_id and (i.namespace, i.function) == function_key
        )
        local = (code_sha256 in node.cached_code) + (node.warm.get(runtime, 0) > 0)
        candidates.append((same, -local, free, node.node_id))
    if not candidates:
        return None
    return min(candidates)[3]
