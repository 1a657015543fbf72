"""The local cluster's port allocation: saved ports reused, and never two programs on one port."""

from __future__ import annotations

import random
import socket

from nimbus.cluster import free_port, ports

NAMES = ["etcd", "etcd_peer", "nats", "redis", "api-1", "api-2"]


def test_saved_ports_are_reused_when_free():
    saved = {name: 21000 + i for i, name in enumerate(NAMES)}
    got = ports.allocate(NAMES, saved, check=lambda p: True, rng=random.Random(1))
    assert got == saved


def test_taken_saved_port_is_replaced_and_others_kept():
    saved = {name: 21000 + i for i, name in enumerate(NAMES)}
    taken = {saved["nats"], saved["api-2"]}
    got = ports.allocate(NAMES, saved, check=lambda p: p not in taken, rng=random.Random(2))
    assert got["nats"] not in taken and got["api-2"] not in taken
    assert {k: v for k, v in got.items() if k not in ("nats", "api-2")} == {
        k: v for k, v in saved.items() if k not in ("nats", "api-2")
    }
    assert len(set(got.values())) == len(NAMES)


def test_new_names_get_ports_and_missing_file_means_all_new():
    got = ports.allocate(NAMES, {}, check=lambda p: True, rng=random.Random(3))
    assert set(got) == set(NAMES)
    assert len(set(got.values())) == len(NAMES)


def test_reserved_and_duplicate_saved_ports_are_never_handed_out():
    saved = {"etcd": 18080, "etcd_peer": 21001, "nats": 21001}  # gateway's port; a duplicate
    got = ports.allocate(
        ["etcd", "etcd_peer", "nats"],
        saved,
        reserved=[18080],
        check=lambda p: True,
        rng=random.Random(4),
    )
    assert got["etcd"] != 18080
    assert got["etcd_peer"] == 21001
    assert got["nats"] != 21001
    assert len(set(got.values())) == 3


def test_picked_ports_lie_below_the_ephemeral_range():
    low, _ = ports._ephemeral_range()
    for _ in range(50):
        assert free_port() < low


def test_free_port_skips_excluded_and_busy_ports():
    busy = set(range(10000, 40000, 2))
    port = free_port(exclude={10001}, check=lambda p: p not in busy, rng=random.Random(5))
    assert port not in busy and port != 10001


def test_is_free_sees_a_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert not ports.is_free(s.getsockname()[1])
    assert ports.is_free(free_port())


def test_save_and_load_round_trip(tmp_path):
    path = tmp_path / "ports.json"
    ports.save(path, {"etcd": 21000, "gateway": 8080})
    assert ports.load(path) == {"etcd": 21000, "gateway": 8080}


def test_unreadable_ports_file_means_no_saved_ports(tmp_path):
    path = tmp_path / "ports.json"
    assert ports.load(path) == {}
    path.write_text("{not json")
    assert ports.load(path) == {}
    path.write_text('["a list"]')
    assert ports.load(path) == {}
