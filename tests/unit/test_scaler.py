"""The autoscaler loop against in-memory records and a recording actuator."""

from nimbus.common import keys
from nimbus.common.clock import FakeClock
from nimbus.common.model import FunctionConfig, FunctionRecord, InstanceRecord, LoadReport, load_key
from nimbus.scheduler.scaler import Autoscaler, Tuning, victims


class Recorder:
    def __init__(self):
        self.started, self.drained, self.pending = [], [], {}

    def start(self, target):
        self.started.append(target)

    def drain(self, instance):
        self.drained.append(instance.instance_id)

    def starting(self, key):
        return self.pending.get(key, 0)

    def draining(self, instance_id):
        return instance_id in self.drained


def fn(min_instances=0, keep_alive_s=600, rev=7):
    config = FunctionConfig(
        "python3.11", "main.handler", min_instances=min_instances, keep_alive_s=keep_alive_s
    )
    return FunctionRecord("ns", "f", config, "sha", 1, "c", "u", rev)


def inst(i, node="n1", rev=7, created="2026-01-01T00:00:00.000Z"):
    return InstanceRecord(i, node, "addr", "ns", "f", "$LATEST", "sha", rev, 128, "READY", created)


def scaler(functions, instances, reports=(), leader=True):
    clock, act = FakeClock(), Recorder()
    a = Autoscaler(
        {keys.function(f.namespace, f.name): f for f in functions},
        {},
        {i.instance_id.encode(): i for i in instances},
        {r.replica.encode(): r for r in reports},
        act,
        clock,
        Tuning(stable_window_s=10, panic_window_s=2),
        lambda: leader,
    )
    return a, act, clock


def test_min_instances_are_started_before_any_call():
    a, act, _ = scaler([fn(min_instances=2)], [])
    a.tick()
    assert len(act.started) == 2 and act.started[0].function == "f"


def test_starts_under_way_are_not_doubled():
    a, act, _ = scaler([fn(min_instances=2)], [])
    act.pending[load_key("ns", "f", "$LATEST", 7)] = 2
    a.tick()
    assert act.started == []


def test_idle_instances_drain_down_to_the_kept_one_then_zero():
    instances = [inst(f"i{k}", created=f"2026-01-01T00:00:0{k}.000Z") for k in range(4)]
    a, act, clock = scaler([fn(keep_alive_s=5)], instances)
    a.tick()
    assert len(act.drained) == 2  # gradual: at most halving
    clock.t += 10
    a.tick()
    assert "i0" not in act.drained[:2]  # newest first


def test_old_revisions_are_left_to_the_reconciler():
    a, act, _ = scaler([fn(rev=9)], [inst("old", rev=7)])
    a.tick()
    assert act.drained == [] and act.started == []


def test_load_reports_keep_instances():
    report = LoadReport("invoker-1", 1.0, {load_key("ns", "f", "$LATEST", 7): 2.8}, 0.0)
    instances = [inst(f"i{k}") for k in range(4)]
    a, act, _ = scaler([fn()], instances, [report])
    a.tick()
    assert act.drained == []


def test_victims_keep_the_spread():
    chosen = victims([inst("a1", "a"), inst("a2", "a"), inst("b1", "b")], 1)
    assert chosen[0].node_id == "a"


def test_instance_concurrency_lets_fewer_instances_hold_the_load():
    # 2.8 calls in flight need 4 one-call instances (test above) but one instance of 10 slots.
    report = LoadReport("invoker-1", 1.0, {load_key("ns", "f", "$LATEST", 7): 2.8}, 0.0)
    record = fn()
    record = FunctionRecord(
        "ns",
        "f",
        FunctionConfig("python3.11", "main.handler", instance_concurrency=10),
        "sha",
        1,
        "c",
        "u",
        record.revision,
    )
    instances = [inst(f"i{k}", created=f"2026-01-01T00:00:0{k}.000Z") for k in range(4)]
    a, act, _ = scaler([record], instances, [report])
    a.tick()
    assert len(act.drained) == 2  # down toward one, at most halving per step


def test_a_huge_min_instances_from_etcd_starts_a_bounded_few_per_tick():
    # Not validated: as if written straight into etcd.
    a, act, _ = scaler([fn(min_instances=2_147_483_647)], [])
    a.tick()
    assert len(act.started) == 16
    act.pending[load_key("ns", "f", "$LATEST", 7)] = 995
    act.started.clear()
    a.tick()
    assert len(act.started) == 5  # up to the bound of 1,000 in all
