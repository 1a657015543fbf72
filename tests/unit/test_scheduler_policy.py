from nimbus.common.model import FunctionConfig, FunctionRecord, InstanceRecord, NodeRecord
from nimbus.scheduler.placement import place
from nimbus.scheduler.reconcile import stale_instances


def node(node_id: str, memory: int) -> NodeRecord:
    return NodeRecord(node_id, f"{node_id}:1", memory, 2, "t")


def inst(
    i: str, node_id: str, fn: str = "f", mem: int = 128, rev: int = 1, version: str = "$LATEST"
) -> InstanceRecord:
    return InstanceRecord(i, node_id, "", "default", fn, version, "sha", rev, mem, "READY", "t")


def fn(name: str, rev: int) -> FunctionRecord:
    return FunctionRecord(
        "default", name, FunctionConfig("python3.11", "main.handler"), "sha", 1, "t", "t", rev
    )


def test_no_node_fits():
    assert place(512, ("default", "f"), [node("a", 256)], []) is None


def test_best_fit_prefers_the_tightest_node():
    assert place(128, ("default", "f"), [node("big", 4096), node("small", 256)], []) == "small"


def test_spreads_one_function_across_nodes():
    nodes = [node("a", 1024), node("b", 4096)]
    assert place(128, ("default", "f"), nodes, [inst("1", "a")]) == "b"


def test_used_memory_counts():
    nodes = [node("a", 256), node("b", 4096)]
    assert place(256, ("default", "g"), nodes, [inst("1", "a", fn="f")]) == "b"


def test_stale_instances_of_updated_and_deleted_functions():
    functions = {("default", "f"): fn("f", 5)}
    instances = [inst("old", "a", rev=4), inst("cur", "a", rev=5), inst("gone", "a", fn="deleted")]
    assert {i.instance_id for i in stale_instances(instances, functions, set())} == {"old", "gone"}


def test_published_versions_are_not_stale_after_latest_changes():
    functions = {("default", "f"): fn("f", 9)}
    assert (
        stale_instances([inst("v1", "a", rev=3, version="1")], functions, {("default", "f", "1")})
        == []
    )


def test_instances_of_a_deleted_version_are_stale():
    functions = {("default", "f"): fn("f", 9)}
    assert [
        i.instance_id
        for i in stale_instances(
            [inst("v2", "a", rev=3, version="2")], functions, {("default", "f", "1")}
        )
    ] == ["v2"]


def test_prefers_a_node_with_the_code_or_a_warm_sandbox():
    import dataclasses

    cold, cached = (
        node("cold", 4096),
        dataclasses.replace(node("cached", 8192), cached_code=("sha1",)),
    )
    assert place(128, ("default", "f"), [cold, cached], [], code_sha256="sha1") == "cached"
    warm = dataclasses.replace(node("warm", 8192), warm={"python3.11": 2})
    assert place(128, ("default", "f"), [cold, warm], [], runtime="python3.11") == "warm"
    # Spreading still comes first.
    assert (
        place(128, ("default", "f"), [cold, cached], [inst("1", "cached")], code_sha256="sha1")
        == "cold"
    )


def test_node_record_round_trips_with_and_without_the_new_fields():
    from nimbus.common.model import NodeRecord

    old = b'{"node_id": "n", "address": "a", "memory_mb": 1, "cpus": 2, "started_at": "t"}'
    assert NodeRecord.from_json(old).cached_code == ()
    new = NodeRecord("n", "a", 1, 2, "t", ("x",), {"nodejs20": 1})
    assert NodeRecord.from_json(new.to_json()) == new
