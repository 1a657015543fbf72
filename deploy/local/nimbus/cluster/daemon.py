"""The supervisord of one cluster: start it, ask it over XML-RPC, stop it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from typing import Any

from nimbus.cluster import procs
from nimbus.cluster.layout import Layout
from supervisor.xmlrpc import SupervisorTransport

STOPPED_STATES = {"STOPPED", "EXITED", "FATAL", "UNKNOWN"}


class SupervisordError(RuntimeError):
    pass


def rpc(layout: Layout) -> Any:
    """A fresh XML-RPC proxy to the cluster's supervisord (cheap; one per call keeps it simple)."""
    transport = SupervisorTransport(None, None, serverurl=f"unix://{layout.socket}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


def running_pid(layout: Layout) -> int | None:
    """The PID of this home's supervisord when one is running (checked against its command line)."""
    pid = procs.read_pid(layout.supervisord_pid)
    return pid if procs.is_ours(pid, "supervisord", str(layout.supervisord_conf)) else None


class Supervisord:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, env: dict[str, str]) -> int:
        """Starts `supervisord -n -c run/supervisord.conf` in its own session; returns its PID."""
        args = [
            sys.executable,
            "-m",
            "nimbus.cluster.supervisord_main",
            str(os.getpid()),
            "-n",
            "-c",
            str(self.layout.supervisord_conf),
        ]
        with open(self.layout.supervisord_out, "wb") as out:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.layout.home,
                start_new_session=True,
            )
        return self.proc.pid

    def exited(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def _output(self) -> str:
        try:
            return self.layout.supervisord_out.read_text(errors="replace").strip()
        except OSError:
            return ""

    async def wait_running(self, deadline: float) -> None:
        """Until supervisord answers XML-RPC; raises with its output when it exits or hangs."""
        while True:
            code = self.exited()
            if code is not None:
                raise SupervisordError(
                    f"supervisord exited with code {code}: {self._output() or '(no output)'}"
                )
            try:
                state = await asyncio.to_thread(lambda: rpc(self.layout).supervisor.getState())
                if state.get("statename") == "RUNNING":
                    return
            except (OSError, xmlrpc.client.Error):
                pass
            if time.monotonic() > deadline:
                raise SupervisordError(
                    f"supervisord did not answer on {self.layout.socket}: {self._output()}"
                )
            await asyncio.sleep(0.05)

    async def stop(self, levels: list[list[str]], level_timeout_s: float) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            await stop_programs(self.layout, levels, level_timeout_s)
        await stop_pid(self.proc.pid, level_timeout_s * max(len(levels), 1), reap=self.proc.poll)
        self.proc.wait()
        self.proc = None


async def stop_pid(pid: int, timeout_s: float, reap: Any = None) -> bool:
    """SIGTERM supervisord and wait for it (it stops its programs first); after timeout_s, SIGKILL
    its programs' process groups and it. True when it stopped by itself."""
    kids = procs.children(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        if not procs.alive(pid):
            return True
        await asyncio.sleep(0.05)
    for kid in set(kids) | set(procs.children(pid)):
        procs.kill_group_or_pid(kid, signal.SIGKILL)
    procs.kill_group_or_pid(pid, signal.SIGKILL)
    while procs.alive(pid):
        if reap is not None:
            reap()
        await asyncio.sleep(0.05)
    return False


async def stop_programs(layout: Layout, levels: list[list[str]], level_timeout_s: float) -> bool:
    """Stops the programs one level at a time, all of a level at once (supervisord alone stops one
    program per second). Best effort: False when supervisord stopped answering."""

    def request(names: list[str]) -> None:
        proxy = rpc(layout)
        for name in names:
            try:
                proxy.supervisor.stopProcess(name, False)
            except xmlrpc.client.Fault:  # not running, or not in this cluster
                pass

    def stopped(names: list[str]) -> bool:
        infos = rpc(layout).supervisor.getAllProcessInfo()
        return all(i["statename"] in STOPPED_STATES for i in infos if i["name"] in names)

    try:
        for names in levels:
            await asyncio.to_thread(request, names)
            deadline = time.monotonic() + level_timeout_s
            while not await asyncio.to_thread(stopped, names) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
    except (OSError, xmlrpc.client.Error):
        return False
    return True
