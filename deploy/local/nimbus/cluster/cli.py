"""`python -m nimbus.cluster up|down|status`: what `make up` and `make down` run."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import xmlrpc.client

from nimbus.cluster import daemon, procs, render, spec
from nimbus.cluster.cluster import ClusterError, LocalCluster, stop_levels
from nimbus.cluster.layout import Layout, default_home
from nimbus.common.config import ConfigError, get_float, get_int

LAUNCHER_MARK = "nimbus.cluster"


# How often the launcher looks for certificates to renew.
ROTATION_CHECK_S = 60.0


def say(line: str) -> None:
    print(line, flush=True)


async def up() -> int:
    env = os.environ
    try:
        gateway = get_int(env, "NIMBUS_GATEWAY_PORT", 8080, minimum=1)
        timeout_s = get_float(env, "NIMBUS_START_TIMEOUT_S", 60.0, minimum=1.0)
    except ConfigError as err:
        say(f"nimbus: {err}")
        return 2
    layout = Layout.at(default_home(env))
    cluster = LocalCluster(layout.home, gateway, log=say)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        cluster.prepare()  # takes the home's lock: a second `up` fails here, before any write
    except ClusterError as err:
        say(f"nimbus: {err}")
        await cluster.stop()
        return 1
    procs.write_pid(layout.launcher_pid, os.getpid())
    try:
        return await _run(cluster, stop, timeout_s)
    finally:
        procs.remove_pid(layout.launcher_pid, os.getpid())


async def _run(cluster: LocalCluster, stop: asyncio.Event, timeout_s: float) -> int:
    starting = asyncio.create_task(cluster.start(timeout_s))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        say("nimbus: interrupted while starting; stopping")
        starting.cancel()
        await asyncio.gather(starting, return_exceptions=True)  # start() stops what it started
        say("nimbus: stopped")
        return 0
    stopping.cancel()
    if (err := starting.exception()) is not None:
        say(f"nimbus: {err}" if isinstance(err, ClusterError) else f"nimbus: start failed: {err!r}")
        say("nimbus: stopped")
        return 1
    say(
        f"nimbus: ready — gateway {cluster.gateway_url}, credentials {cluster.layout.credentials}, "
        f"logs {cluster.layout.logs}"
    )
    # The launcher holds the CA: it renews each certificate once past half its life.
    next_rotation = time.monotonic() + ROTATION_CHECK_S
    while not stop.is_set():
        if time.monotonic() >= next_rotation:
            next_rotation = time.monotonic() + ROTATION_CHECK_S
            try:
                renewed = await asyncio.to_thread(cluster.rotate_certificates)
                if renewed:
                    say(f"nimbus: renewed the certificates of {', '.join(renewed)}")
            except Exception as err:
                say(f"nimbus: certificate renewal failed ({err!r}); retrying in a minute")
        code = cluster.supervisord_exited()
        if code is not None:
            say(
                f"nimbus: supervisord exited unexpectedly (code {code}); "
                f"see {cluster.layout.logs}/supervisord.log"
            )
            await cluster.stop()
            return 1
        try:
            await asyncio.wait_for(stop.wait(), 0.5)
        except TimeoutError:
            pass
    say("nimbus: stopping")
    await cluster.stop()
    say("nimbus: stopped")
    return 0


async def down() -> int:
    layout = Layout.at(default_home())
    programs = spec.load().programs
    bound = render.STOP_WAIT_S * len(programs) + 20
    did = False
    launcher = procs.read_pid(layout.launcher_pid)
    if launcher != os.getpid() and procs.is_ours(launcher, LAUNCHER_MARK):
        say(f"nimbus: stopping the cluster in {layout.home} (launcher pid {launcher})")
        os.kill(launcher, signal.SIGTERM)
        deadline = time.monotonic() + bound
        while procs.alive(launcher) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        did = True
    supervisord = daemon.running_pid(layout)
    if supervisord is not None:
        say(f"nimbus: stopping supervisord (pid {supervisord})")
        await daemon.stop_programs(layout, stop_levels(programs), render.STOP_WAIT_S + 5)
        if not await daemon.stop_pid(supervisord, bound):
            say("nimbus: supervisord did not stop in time; killed it and its programs")
        did = True
    say("nimbus: stopped" if did else f"nimbus: nothing running in {layout.home}")
    return 0


def status() -> int:
    layout = Layout.at(default_home())
    if daemon.running_pid(layout) is None:
        say(f"nimbus: nothing running in {layout.home}")
        return 3
    try:
        infos = daemon.rpc(layout).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error) as err:
        say(f"nimbus: supervisord does not answer: {err}")
        return 1
    for info in infos:
        say(f"{info['name']:<14} {info['statename']:<9} {info['description']}")
    return 0


def rotate_certs() -> int:
    """Re-issues every certificate of the cluster in NIMBUS_HOME now (the running processes pick
    theirs up within seconds); the launcher also does it by itself past half their life."""
    home = default_home()
    cluster = LocalCluster(home, 0)
    if not (cluster.layout.pki / "ca.key").exists():
        say(f"nimbus: no cluster CA in {cluster.layout.pki}; `make up` creates it")
        return 1
    renewed = cluster.rotate_certificates(force=True)
    say(f"nimbus: renewed {len(renewed)} certificates in {cluster.layout.pki}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nimbus.cluster", description="The Nimbus local cluster."
    )
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "rotate-certs"],
        help="up: run in the foreground until Ctrl-C; down: stop the running one; status; "
        "rotate-certs: re-issue every certificate now",
    )
    args = parser.parse_args(argv)
    if args.command == "status":
        return status()
    if args.command == "rotate-certs":
        return rotate_certs()
    return asyncio.run(up() if args.command == "up" else down())


if __name__ == "__main__":
    sys.exit(main())
