"""The real etcd, nats-server and redis-server on free loopback ports, for the tests.

A session shares one of each (tests/conftest.py) and isolates tests inside it: a NATS account of
their own (accounts keep separate JetStream streams, so every test module sees its own
NIMBUS_EVENTS and NIMBUS_LOGS), a Redis database of their own, and in etcd keys under node ids and
function names nobody else uses. A test that kills or restarts a server starts a private one with
the same classes."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
from pathlib import Path

from nimbus.cluster import binaries

from tests.support import free_port, wait_port


def stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    """Sends sig unless the process is gone already, and reaps it."""
    if proc is None:
        return
    if proc.poll() is None:
        os.kill(proc.pid, sig)
    proc.wait()


# -- etcd -----------------------------------------------------------------------------------------


class EtcdServer:
    """One etcd member on a client and a peer port; start() again after a kill reuses both and
    the data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def start(self) -> EtcdServer:
        self.proc = start_etcd(self.data_dir, self.client_port, self.peer_port)
        return self

    def kill9(self) -> None:
        stop(self.proc)


def start_etcd(data_dir: Path, client: int, peer: int) -> subprocess.Popen[bytes]:
    """Starts etcd without waiting for it (a client's wait_ready does); logs beside data_dir."""
    with open(data_dir.parent / f"etcd-{client}.log", "ab") as log:
        return subprocess.Popen(
            [
                binaries.resolve({"etcd"})["etcd"],
                "--name=na-test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls=http://127.0.0.1:{client}",
                f"--advertise-client-urls=http://127.0.0.1:{client}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=na-test=http://127.0.0.1:{peer}",
                "--log-level=error",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


# -- NATS -----------------------------------------------------------------------------------------


class NatsServer:
    """nats-server with JetStream on file storage. With accounts > 0 it has that many accounts,
    each with JetStream of its own, handed out one by one by account(); start() again after a
    kill9() reuses the port and the store."""

    def __init__(self, store: Path, accounts: int = 0) -> None:
        self.port = free_port()
        self.store = store
        self.accounts = accounts
        self.proc: subprocess.Popen[bytes] | None = None
        self._next = itertools.count()

    @property
    def url(self) -> str:
        """The server's URL (its default account, when there are no others)."""
        return f"nats://127.0.0.1:{self.port}"

    def account(self) -> str:
        """A URL that logs into an account no one else has had: streams of its own."""
        n = next(self._next)
        if n >= self.accounts:
            raise RuntimeError(f"all {self.accounts} NATS accounts are taken; raise the number")
        return f"nats://t{n}:t{n}@127.0.0.1:{self.port}"

    def start(self) -> NatsServer:
        args = ["-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)]
        if self.accounts:
            conf = self.store.parent / f"nats-{self.port}.conf"
            users = "\n".join(
                f"  t{n}: {{ jetstream: enabled, users: [{{user: t{n}, password: t{n}}}] }}"
                for n in range(self.accounts)
            )
            conf.write_text(
                f"listen: 127.0.0.1:{self.port}\n"
                f'jetstream {{ store_dir: "{self.store}" }}\n'
                f"accounts {{\n{users}\n}}\n"
            )
            args = ["-c", str(conf)]
        self.proc = subprocess.Popen(
            [binaries.resolve({"nats"})["nats"], *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def kill9(self) -> None:
        stop(self.proc)

    def terminate(self) -> None:
        stop(self.proc, signal.SIGTERM)


# -- Redis ----------------------------------------------------------------------------------------


class RedisServer:
    """redis-server without persistence, with `databases` numbered databases handed out one by
    one by database(); start() again after a kill9() reuses the port."""

    def __init__(self, workdir: Path, databases: int = 16, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.databases = databases
        self.proc: subprocess.Popen[bytes] | None = None
        self._next = itertools.count()

    @property
    def url(self) -> str:
        """Database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def database(self) -> str:
        """The URL of a database no one else has had (0 stays for url)."""
        n = next(self._next) + 1
        if n >= self.databases:
            raise RuntimeError(f"all {self.databases} Redis databases are taken; raise the number")
        return f"redis://127.0.0.1:{self.port}/{n}"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                binaries.resolve({"redis"})["redis"],
                *("--bind", "127.0.0.1", "--port", str(self.port), "--save", ""),
                *("--dir", str(self.workdir), "--databases", str(self.databases)),
            ],
            stdout=subprocess.DEVNULL,
        )
        wait_port(self.port)
        return self

    def kill9(self) -> None:
        stop(self.proc)

    def terminate(self) -> None:
        stop(self.proc, signal.SIGTERM)
