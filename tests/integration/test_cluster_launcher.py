"""The local cluster launcher with the real infrastructure binaries (no Nimbus services needed):
supervisord restarts what dies, stop leaves nothing behind, homes and ports stay apart."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from nimbus.cluster import ClusterError, LocalCluster, free_port, procs
from nimbus.cluster.layout import REPO

from tests.support import until

pytestmark = pytest.mark.timeout(180)

INFRA = {"etcd", "nats", "redis"}


@pytest.mark.slow
async def test_infra_starts_restarts_after_kill_and_stops_clean(tmp_path):
    home = tmp_path / "home"
    cluster = LocalCluster(home, free_port(), only=INFRA)
    await cluster.start(timeout_s=60)
    try:
        assert sorted(cluster.names) == sorted(INFRA)
        for name in INFRA:
            assert cluster.state(name) == "RUNNING"
            assert await cluster.healthy(name)
            assert cluster.log_path(name) == home / "logs" / f"{name}.log"
        pids = {name: cluster.pid(name) for name in INFRA}
        supervisord = cluster.supervisord_pid
        assert all(procs.alive(pid) for pid in pids.values())
        # the supervised PID is the server itself, not a wrapper
        assert "redis-server" in procs.cmdline(pids["redis"])
        assert "etcdbin/etcd" in procs.cmdline(pids["etcd"])

        creds = cluster.credentials
        assert creds["endpoint"] == cluster.gateway_url and creds["api_key"]
        assert json.loads((home / "ports.json").read_text())["etcd"] == cluster.ports["etcd"]
        for d in ("etcd", "jetstream", "redis", "code", "logs", "run"):
            assert (home / d).is_dir()

        killed = cluster.kill("redis")
        assert killed == pids["redis"]
        await until(lambda: cluster.pid("redis") not in (0, killed), 30, "redis restarted")
        await cluster.wait_healthy("redis", timeout_s=30)
        assert cluster.pid("etcd") == pids["etcd"]  # only the dead one was restarted
        new_redis = cluster.pid("redis")
    finally:
        await cluster.stop()
    for pid in [*pids.values(), new_redis, supervisord]:
        assert not procs.alive(pid), f"pid {pid} ({procs.cmdline(pid)}) outlived stop()"
    assert not (home / "run" / "supervisord.pid").exists()


@pytest.mark.slow
async def test_restart_reuses_ports_data_and_credentials(tmp_path):
    home = tmp_path / "home"
    first = LocalCluster(home, free_port(), only={"etcd"})
    await first.start(timeout_s=60)
    ports, key = first.ports, first.credentials["api_key"]
    await first.stop()

    second = LocalCluster(home, first.gateway_port, only={"etcd"})
    await second.start(timeout_s=60)
    try:
        assert second.ports == ports
        assert second.credentials["api_key"] == key  # still in etcd's data dir
    finally:
        await second.stop()


async def test_a_taken_saved_port_is_replaced(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        (home / "ports.json").write_text(json.dumps({"redis": taken}))
        async with LocalCluster(home, free_port(), only={"redis"}) as cluster:
            assert cluster.ports["redis"] != taken
            assert json.loads((home / "ports.json").read_text())["redis"] == cluster.ports["redis"]
            supervisord = cluster.supervisord_pid
    assert supervisord is not None and not procs.alive(supervisord)


async def test_one_home_runs_one_cluster(tmp_path):
    home = tmp_path / "home"
    cluster = LocalCluster(home, free_port(), only={"redis"})
    await cluster.start(timeout_s=60)
    try:
        with pytest.raises(ClusterError, match="already running"):
            await LocalCluster(home, free_port(), only={"redis"}).start(timeout_s=10)
        assert cluster.state("redis") == "RUNNING"
    finally:
        await cluster.stop()


async def test_two_clusters_with_envoy_side_by_side(tmp_path):
    a = LocalCluster(tmp_path / "a", free_port(), only={"redis", "envoy"})
    b = LocalCluster(tmp_path / "b", free_port(), only={"redis", "envoy"})
    await a.start(timeout_s=60)
    try:
        await b.start(timeout_s=60)
        try:
            assert a.gateway_port != b.gateway_port

            # The ports each cluster really listens on (ports of programs `only` left out are
            # merely reserved in ports.json and may be picked by the other cluster).
            def bound(c):
                return {c.ports[port] for prog in c.programs for port in prog.ports} | {
                    c.gateway_port
                }

            assert bound(a).isdisjoint(bound(b))
            for c in (a, b):
                assert await c.healthy("envoy") and await c.healthy("redis")
        finally:
            await b.stop()
    finally:
        await a.stop()


async def test_start_fails_fast_naming_a_busy_gateway_port(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        cluster = LocalCluster(tmp_path / "home", port, only={"envoy"})
        with pytest.raises(ClusterError, match=rf"gateway port {port}.*NIMBUS_GATEWAY_PORT"):
            await cluster.start(timeout_s=30)
    assert cluster.supervisord_pid is None


@pytest.mark.slow
async def test_start_timeout_names_the_program_and_its_log(tmp_path):
    spec = tmp_path / "cluster.toml"
    spec.write_text(
        (REPO / "deploy/local/cluster.toml").read_text()
        + '\n[[process]]\nname = "broken"\nservice = true\nhealth = "grpc"\npriority = 20\n'
        'ports = ["{name}-metrics"]\n'
        'command = "{python} -c \'import sys; print(\\"boom\\"); sys.exit(3)\'"\n'
    )
    cluster = LocalCluster(tmp_path / "home", free_port(), only={"redis", "broken"}, spec_path=spec)
    # Long enough for supervisord itself to answer on a loaded machine; "broken" never gets ready.
    with pytest.raises(ClusterError) as err:
        await cluster.start(timeout_s=15)
    message = str(err.value)
    assert "not ready after 15 s: broken" in message
    assert str(tmp_path / "home" / "logs" / "broken.log") in message
    assert "boom" in message
    assert cluster.supervisord_pid is None  # a failed start stops what it started


@pytest.mark.slow
async def test_start_stops_waiting_for_a_service_with_a_bad_setting(tmp_path):
    cluster = LocalCluster(
        tmp_path / "home", free_port(), {"NIMBUS_EVENT_LOOP": "bogus"}, only={"etcd", "funcmgr"}
    )
    started = time.monotonic()
    with pytest.raises(ClusterError) as err:
        await cluster.start(timeout_s=120)
    message = str(err.value)
    assert message.startswith("configuration error: funcmgr cannot start as configured")
    assert "NIMBUS_EVENT_LOOP" in message and "bogus" in message
    assert "Traceback" not in message
    # Not the 120 s deadline: the first configuration-error line ends the wait.
    assert time.monotonic() - started < 60
    assert cluster.supervisord_pid is None
    # Mended, the same home starts: the old line in funcmgr's log is not this run's.
    async with LocalCluster(tmp_path / "home", free_port(), only={"etcd", "funcmgr"}) as mended:
        assert mended.state("funcmgr") == "RUNNING"


def _cli(
    args: list[str], home: Path, gateway: int, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIMBUS_HOME": str(home), "NIMBUS_GATEWAY_PORT": str(gateway)}
    return subprocess.run(
        [sys.executable, "-m", "nimbus.cluster", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def test_cli_down_with_nothing_running(tmp_path):
    result = _cli(["down"], tmp_path / "home", free_port())
    assert result.returncode == 0
    assert "nothing running" in result.stdout


def test_cli_up_refuses_a_busy_gateway_port(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _cli(["up"], tmp_path / "home", port)
    assert result.returncode == 1
    assert f"gateway port {port}" in result.stdout and "NIMBUS_GATEWAY_PORT" in result.stdout
    assert not (tmp_path / "home" / "run" / "launcher.pid").exists()


@pytest.mark.slow
def test_cli_up_is_interrupted_cleanly_by_down(tmp_path):
    """`down` from another shell stops an `up` that is still waiting for its programs."""
    home = tmp_path / "home"
    env = {
        **os.environ,
        "NIMBUS_HOME": str(home),
        "NIMBUS_GATEWAY_PORT": str(free_port()),
        "NIMBUS_START_TIMEOUT_S": "120",
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "nimbus.cluster", "up"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (home / "run" / "supervisord.pid").exists():
            assert up.poll() is None, up.stdout.read() if up.stdout else ""
            assert time.monotonic() < deadline, "supervisord never started"
            time.sleep(0.1)
        supervisord = procs.read_pid(home / "run" / "supervisord.pid")
        assert procs.read_pid(home / "run" / "launcher.pid") == up.pid
        down = _cli(["down"], home, 0, timeout=120)
        assert down.returncode == 0 and "stopped" in down.stdout, down.stdout
        assert up.wait(timeout=30) == 0
        output = up.stdout.read() if up.stdout else ""
        assert "nimbus: stopped" in output
        assert supervisord is not None and not procs.alive(supervisord)
        assert not (home / "run" / "launcher.pid").exists()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)
