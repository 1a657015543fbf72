"""LocalCluster: one cluster under one NIMBUS_HOME, as `make up` runs it and as tests drive it."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import time
import xmlrpc.client
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import grpc
from nimbus.cluster import binaries, daemon, envoy, ports, procs, render, spec, storeauth
from nimbus.cluster.health import (
    PLAINTEXT,
    Credentials,
    check,
    envoy_upstreams_healthy,
    operator_channel,
)
from nimbus.cluster.layout import Layout
from nimbus.cluster.readiness import log_offsets, wait_ready
from nimbus.common import pki
from nimbus.gateway import xds
from nimbus.gateway.stores.files import XdsDirectory

HOST = "127.0.0.1"


def stop_levels(programs: Iterable[spec.Program]) -> list[list[str]]:
    """Program names grouped by priority, highest first: the order to stop them in."""
    levels: dict[int, list[str]] = {}
    for p in programs:
        levels.setdefault(p.priority, []).append(p.name)
    return [levels[k] for k in sorted(levels, reverse=True)]


class ClusterError(RuntimeError):
    """Start or stop failed; the message says what to do (without a "nimbus:" prefix)."""


class LocalCluster:
    def __init__(
        self,
        home: Path | str,
        gateway_port: int,
        env: Mapping[str, str] | None = None,
        *,
        only: Iterable[str] | None = None,
        spec_path: Path = spec.DEFAULT_SPEC,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.layout = Layout.at(home)
        self.gateway_port = int(gateway_port)
        self.extra_env = dict(env or {})
        self.spec = spec.load(spec_path, {**os.environ, **self.extra_env})
        chosen = set(self.spec.names if only is None else only)
        unknown = chosen - set(self.spec.names)
        if unknown:
            raise ClusterError(
                f"unknown programs {sorted(unknown)}; the cluster has {self.spec.names}"
            )
        self.programs = [p for p in self.spec.programs if p.name in chosen]
        self._say = log or (lambda line: None)
        self._ports: dict[str, int] = {}
        self._supervisord = daemon.Supervisord(self.layout)
        self._lock: int | None = None
        self._prepared = False
        self._operator: pki.Identity | None = None
        self._check_creds = PLAINTEXT

    # -- what tests read ---------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.programs]

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway_port}"

    @property
    def ports(self) -> dict[str, int]:
        return {**self._ports, "gateway": self.gateway_port}

    @property
    def credentials(self) -> dict[str, str]:
        creds: dict[str, str] = json.loads(self.layout.credentials.read_text())
        return creds

    @property
    def supervisord_pid(self) -> int | None:
        return self._supervisord.pid

    def log_path(self, name: str) -> Path:
        return self.layout.log(name)

    def info(self, name: str) -> dict[str, Any]:
        """supervisord's getProcessInfo for one program (pid, statename, spawnerr, ...)."""
        self.spec.program(name)
        info: dict[str, Any] = daemon.rpc(self.layout).supervisor.getProcessInfo(name)
        return info

    def pid(self, name: str) -> int:
        """The program's PID, 0 while it is not running."""
        return int(self.info(name)["pid"])

    def state(self, name: str) -> str:
        """RUNNING, STARTING, BACKOFF, STOPPED, EXITED, FATAL, ..."""
        return str(self.info(name)["statename"])

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Sends sig to the program's PID only (not its group); returns that PID."""
        pid = self.pid(name)
        if pid <= 0:
            raise ClusterError(f"{name} is not running (state {self.state(name)})")
        os.kill(pid, sig)
        return pid

    def stop_program(self, name: str) -> None:
        """Stops the program the way supervisord does (SIGTERM, then its drain) and waits until it
        exited; supervisord does not restart it until start_program(name)."""
        self.spec.program(name)
        daemon.rpc(self.layout).supervisor.stopProcess(name, True)

    def start_program(self, name: str) -> None:
        """Starts a stopped program and waits until supervisord counts it as started."""
        self.spec.program(name)
        daemon.rpc(self.layout).supervisor.startProcess(name, True)

    async def healthy(self, name: str) -> bool:
        program = self.spec.program(name)
        return await check(
            program.health, self._ports[program.health_port], program.base, self.check_credentials
        )

    def _credentials(self, passwords: dict[str, str]) -> Credentials:
        return Credentials(
            self.operator_identity,
            self.layout.redis_socket,
            pki.OPERATOR,
            passwords[pki.OPERATOR],
        )

    @property
    def check_credentials(self) -> Credentials:
        """What the health checks prove themselves with (made by prepare, or read back from the
        home of a cluster started by another launcher)."""
        if (
            self._check_creds is PLAINTEXT
            and pki.identity_file(self.layout.pki, pki.OPERATOR).exists()
        ):
            self._check_creds = self._credentials(storeauth.redis_passwords(self.layout.pki))
        return self._check_creds

    # -- certificates (nimbus.common.pki) ----------------------------------------------------

    def identities(self) -> list[tuple[str, str]]:
        """(service, replica) of every certificate this cluster needs: each service replica,
        Envoy, and the launcher itself (the operator)."""
        wanted = [(p.base, p.name) for p in self.spec.programs if p.service]
        # the stores that take clients over TLS serve with certificates of their own
        wanted += [(p.base, p.name) for p in self.spec.programs if p.health in ("etcd", "nats")]
        if any(p.health == "envoy" for p in self.spec.programs):
            wanted.append((envoy.ENVOY_REPLICA, envoy.ENVOY_REPLICA))
        return [*wanted, (pki.OPERATOR, pki.OPERATOR)]

    def _prepare_stores(self) -> dict[str, str]:
        """NATS's TLS and users, Redis's socket directory and ACL users (storeauth); returns
        each service's Redis URL."""
        self.layout.nats_conf.write_text(storeauth.nats_conf(self.layout.pki))
        sock = self.layout.redis_socket
        sock.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(sock.parent, 0o700)
        passwords = storeauth.redis_passwords(self.layout.pki)
        acl = self.layout.pki / "redis.acl"
        fd = os.open(acl, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(storeauth.redis_acl(passwords))
        self._check_creds = self._credentials(passwords)
        return {s: storeauth.redis_url(sock, s, pw) for s, pw in passwords.items()}

    def nats_tls(self) -> dict[str, Any]:
        """nats.connect's TLS arguments for the operator (tests, tools)."""
        return {
            "tls": self.operator_identity.ssl_context(server=False, peer_service="nats"),
            "tls_hostname": pki.server_name("nats"),
        }

    def rotate_certificates(self, *, force: bool = False) -> list[str]:
        """Re-issues the certificates that are due (past half their life), or all with force;
        every process picks its new one up within seconds, without a restart. Returns the
        replicas renewed. Extra replicas issued by issue_certificate are renewed too."""
        wanted = dict.fromkeys([*self.identities(), *pki.issued_identities(self.layout.pki)])
        renewed = pki.ensure_identities(self.layout.pki, wanted, self.cert_ttl_s, force=force)
        # nats-server reads its certificate again on a config reload (etcd and Envoy by
        # themselves, the services through nimbus.common.mtls)
        if "nats" in renewed and daemon.running_pid(self.layout) and "nats" in self.names:
            try:
                daemon.rpc(self.layout).supervisor.signalProcess("nats", "HUP")
            except (OSError, xmlrpc.client.Error):
                pass  # not running: it reads the new one when it starts
        return renewed

    def issue_certificate(self, service: str, replica: str) -> Path:
        """A certificate for a replica started outside the process list (tests, operators)."""
        pki.ensure_identities(self.layout.pki, [(service, replica)], self.cert_ttl_s)
        return pki.identity_file(self.layout.pki, replica)

    @property
    def operator_identity(self) -> pki.Identity:
        """The launcher's own certificate (tools and tests use it for etcd, NATS, gRPC)."""
        if self._operator is None:
            self._operator = pki.Identity(self.layout.pki, pki.OPERATOR)
        self._operator.reload()
        return self._operator

    def channel(self, name: str) -> grpc.aio.Channel:
        """A gRPC channel to one program, with the operator's certificate."""
        program = self.spec.program(name)
        return operator_channel(
            f"{HOST}:{self._ports[program.name]}", program.base, self.operator_identity
        )

    @property
    def cert_ttl_s(self) -> float:
        raw = {**os.environ, **self.extra_env}.get("NIMBUS_CERT_TTL_S", "").strip()
        if not raw:
            return float(pki.DEFAULT_CERT_TTL_S)
        try:
            ttl = float(raw)
        except ValueError:
            raise ClusterError(f"NIMBUS_CERT_TTL_S={raw!r} is not a number of seconds") from None
        if ttl < 60:
            raise ClusterError(f"NIMBUS_CERT_TTL_S={raw!r} must be at least 60 seconds")
        return ttl

    async def ready(self, name: str) -> bool:
        """Healthy, and RUNNING in supervisord's eyes (it stayed up for startsecs)."""
        if not await self.healthy(name):
            return False
        try:
            return await asyncio.to_thread(self.state, name) == "RUNNING"
        except (OSError, xmlrpc.client.Error):
            return False

    async def wait_healthy(self, name: str, timeout_s: float = 30.0) -> None:
        """Until ready(name); raises TimeoutError naming the program's state and log."""
        deadline = time.monotonic() + timeout_s
        while not await self.ready(name):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{name} not healthy after {timeout_s:g} s (state {self.state(name)}); "
                    f"log: {self.log_path(name)}"
                )
            await asyncio.sleep(0.1)

    # -- start and stop ----------------------------------------------------------------------

    def prepare(self) -> None:
        """Directories, the home's lock, ports, and the rendered configs; raises ClusterError."""
        self.layout.ensure()
        self._take_lock()
        has_envoy = any(p.health == "envoy" for p in self.programs)
        if has_envoy and not ports.is_free(self.gateway_port):
            raise ClusterError(
                f"gateway port {self.gateway_port} on {HOST} is in use by another process; "
                "stop it or choose a free port with NIMBUS_GATEWAY_PORT=<port>"
            )
        if has_envoy and not envoy.DESCRIPTOR.exists():
            raise ClusterError(f"{envoy.DESCRIPTOR} is missing; run `make proto`")
        try:
            bins = binaries.resolve({p.name for p in self.programs})
        except FileNotFoundError as err:
            raise ClusterError(str(err)) from None
        saved = ports.load(self.layout.ports_file)
        self._ports = ports.allocate(self.spec.port_names, saved, reserved=[self.gateway_port])
        ports.save(self.layout.ports_file, self.ports)
        reused = sum(1 for k, v in self._ports.items() if saved.get(k) == v)
        self._say(
            f"nimbus: home {self.layout.home}; ports in {self.layout.ports_file} "
            f"({reused} of {len(self._ports)} reused)"
        )
        issued = self.rotate_certificates()
        (self.layout.pki / envoy.sds_file(self.layout.pki).name).write_text(
            envoy.sds_document(self.layout.pki)
        )
        self._say(
            f"nimbus: cluster CA and certificates in {self.layout.pki} ({len(issued)} issued)"
        )
        redis_urls = self._prepare_stores()
        ctx = render.Context(
            self.layout, self._ports, self.gateway_port, bins, binaries.python(), redis_urls
        )
        conf = render.supervisord_conf(self.spec, ctx, os.environ, self.extra_env, self.names)
        # it holds the services' Redis passwords
        fd = os.open(self.layout.supervisord_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(conf)
        os.chmod(self.layout.supervisord_conf, 0o600)
        zip_mb = {**os.environ, **self.extra_env}.get("NIMBUS_MAX_ZIP_MB", "") or str(
            envoy.DEFAULT_MAX_ZIP_MB
        )
        if not zip_mb.isdigit() or int(zip_mb) < 1:
            raise ClusterError(
                f"NIMBUS_MAX_ZIP_MB={zip_mb!r} must be a positive whole number of megabytes"
            )
        try:
            limits = envoy.EdgeLimits.from_env({**os.environ, **self.extra_env})
        except ValueError as err:
            raise ClusterError(str(err)) from None
        self.layout.envoy_yaml.write_text(
            envoy.render(
                self.spec,
                self._ports,
                self.gateway_port,
                max_zip_mb=int(zip_mb),
                xds_dir=self.layout.xds_dir,
                limits=limits,
                pki_dir=self.layout.pki,
            )
        )
        # Envoy needs its xDS files to exist; the gateway program fills them from the registry.
        XdsDirectory(self.layout.xds_dir).write(xds.seed_files())
        self._say(
            f"nimbus: wrote {self.layout.supervisord_conf} ({len(self.programs)} programs) "
            f"and {self.layout.envoy_yaml}"
        )
        self._prepared = True

    async def start(self, timeout_s: float = 60.0) -> None:
        """Starts supervisord in the background, waits until every program is ready, creates the
        admin credentials. On failure everything started is stopped again
        and ClusterError raised."""
        deadline = time.monotonic() + timeout_s
        try:
            if not self._prepared:
                self.prepare()
            offsets = log_offsets(self)
            pid = self._supervisord.start(dict(os.environ))
            self._say(f"nimbus: supervisord started (pid {pid}); logs in {self.layout.logs}")
            try:
                await self._supervisord.wait_running(deadline)
            except daemon.SupervisordError as err:
                raise ClusterError(str(err)) from None
            await wait_ready(self, deadline, timeout_s, self._say, offsets)
            await self._wait_gateway_routes(deadline)
            await self._bootstrap(deadline)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stops the programs level by level in reverse priority order (envoy first, infrastructure
        last), then supervisord; waits for all of it. Safe to call twice."""
        if self._supervisord.pid is not None:
            await self._supervisord.stop(stop_levels(self.programs), render.STOP_WAIT_S + 5)
        self._release_lock()
        self._prepared = False

    async def __aenter__(self) -> LocalCluster:
        """`async with LocalCluster(...) as cluster:` starts it
        (if not started) and stops it after."""
        if self._supervisord.pid is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def supervisord_exited(self) -> int | None:
        return self._supervisord.exited()

    # -- internals ---------------------------------------------------------------------------

    def _take_lock(self) -> None:
        if self._lock is not None:
            return
        fd = os.open(self.layout.run / "cluster.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = procs.read_pid(self.layout.launcher_pid)
            who = f" (launcher pid {owner})" if procs.is_ours(owner, "nimbus.cluster") else ""
            raise ClusterError(
                f"a cluster is already running in {self.layout.home}{who}; "
                f"stop it first with `make down` (NIMBUS_HOME={self.layout.home})"
            ) from None
        self._lock = fd
        if daemon.running_pid(self.layout):
            self._release_lock()
            raise ClusterError(
                f"a supervisord of {self.layout.home} is still running; run `make down`"
            )

    def _release_lock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    async def _wait_gateway_routes(self, deadline: float) -> None:
        """Envoy sends traffic only to hosts its health checks passed:
        wait for those it routes to."""
        if "envoy" not in self.names:
            return
        want = {
            base: len(self.spec.replicas(base))
            for base in ("api", "invoker")
            if all(p.name in self.names for p in self.spec.replicas(base))
        }
        if not want:
            return
        while not await envoy_upstreams_healthy(self._ports["envoy_admin"], want):
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"envoy does not see healthy upstreams {want}; log: {self.log_path('envoy')}"
                )
            await asyncio.sleep(0.1)
        self._say(
            "nimbus: envoy routes to "
            + ", ".join(f"{n} {b}" for b, n in want.items())
            + " replicas"
        )

    async def _bootstrap(self, deadline: float) -> None:
        if "etcd" not in self.names:
            return
        from nimbus.common.bootstrap import ensure_admin_credentials
        from nimbus.common.etcd import Etcd

        client = Etcd(HOST, self._ports["etcd"], self.operator_identity)
        try:
            await client.wait_ready(max(deadline - time.monotonic(), 1.0))
            path = await ensure_admin_credentials(client, self.layout.home, self.gateway_url)
        finally:
            await client.close()
        self._say(f"nimbus: admin credentials in {path}")
