"""A thin etcd adapter over aetcd: deadlines on every call, reconnects, and a watch-backed cache."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import aetcd
import aetcd.exceptions
import aetcd.rpc
import aetcd.utils
import aetcd.watcher
import grpc
from nimbus.common import mtls, pki
from nimbus.common.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

CALL_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class KV:
    key: bytes
    value: bytes
    mod_revision: int
    lease: int


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes


@dataclass(frozen=True, slots=True)
class DeletePrefix:
    prefix: bytes


@dataclass(frozen=True, slots=True)
class ModIs:
    """A transaction guard: key is still at mod_revision (0: the key does not exist)."""

    key: bytes
    mod_revision: int


Op = Put | Delete | DeletePrefix


class _TlsClient(aetcd.Client):  # type: ignore[misc]  # aetcd ships no types
    """aetcd's client over mutual TLS (aetcd itself opens only plaintext channels): the channel
    presents this replica's certificate, follows its rotations (nimbus.common.mtls), and checks
    that the server is the cluster's etcd."""

    def __init__(self, identity: pki.Identity, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._identity = identity

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:  # type: ignore[has-type]
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            options = [
                *self._options.items(),
                ("grpc.ssl_target_name_override", pki.server_name(ETCD_SERVICE)),
            ]
            self.channel = mtls.RotatingChannel(
                lambda creds: grpc.aio.secure_channel(target, creds, options=options),
                self._identity,
            )
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False


# The service name of etcd's certificate (deploy/local/cluster.toml issues it).
ETCD_SERVICE = "etcd"


class Etcd:
    """One aetcd client per process. Calls raise Unavailable when etcd cannot be reached in time.

    `identity`: this replica's certificate (nimbus.common.mtls.configure()); etcd then takes the
    client over mutual TLS. None: plaintext, for a test's own etcd."""

    def __init__(self, host: str, port: int, identity: pki.Identity | None = None) -> None:
        if identity is None:
            self._client = aetcd.Client(
                host=host, port=port, timeout=CALL_TIMEOUT_S, connect_wait_timeout=3
            )
        else:
            self._client = _TlsClient(
                identity, host=host, port=port, timeout=CALL_TIMEOUT_S, connect_wait_timeout=3
            )

    @property
    def raw(self) -> aetcd.Client:
        return self._client

    async def close(self) -> None:
        await self._client.close()

    async def wait_ready(self, deadline_s: float = 60.0) -> None:
        """Retries with backoff until etcd answers; services start before etcd is up."""
        delay = 0.1
        async with asyncio.timeout(deadline_s):
            while True:
                try:
                    await self.get(b"/nimbus/ping")
                    return
                except Unavailable as err:
                    log.warning(
                        "etcd not reachable yet, retrying", extra={"fields": {"error": str(err)}}
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def _call(self, coro_fn: Callable[[], Awaitable[T]]) -> T:
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                return await coro_fn()
        except (
            aetcd.exceptions.ConnectionFailedError,
            aetcd.exceptions.ConnectionTimeoutError,
            TimeoutError,
        ) as err:
            raise Unavailable(f"etcd unavailable: {err or type(err).__name__}") from err
        except aetcd.exceptions.ClientError as err:
            raise Unavailable(f"etcd error: {err}") from err
        except grpc.aio.AioRpcError as err:
            # aetcd passes some statuses through untranslated (e.g. NOT_FOUND for a revoked lease).
            raise Unavailable(f"etcd error: {err.code().name}: {err.details()}") from err

    async def get(self, key: bytes) -> KV | None:
        res = await self._call(lambda: self._client.get(key))
        if res is None:
            return None
        return KV(res.key, res.value, res.mod_revision, res.lease)

    async def get_prefix(self, prefix: bytes) -> tuple[list[KV], int]:
        """All keys under prefix and the store revision they were read at."""
        res = await self._call(lambda: self._client.get_prefix(prefix))
        items = [KV(kv.key, kv.value, kv.mod_revision, kv.lease) for kv in res]
        return items, int(res.header.revision)

    async def put(self, key: bytes, value: bytes, lease: int | None = None) -> int:
        res = await self._call(lambda: self._client.put(key, value, lease=lease))
        return int(res.header.revision)

    async def delete(self, key: bytes) -> bool:
        res = await self._call(lambda: self._client.delete(key))
        return res is not None

    async def create(self, key: bytes, value: bytes, lease: int | None = None) -> int | None:
        """Puts key only if it does not exist; the new revision, or None when it existed."""
        tx = self._client.transactions
        ok, responses = await self._call(
            lambda: self._client.transaction(
                compare=[tx.version(key) == 0], success=[tx.put(key, value, lease)], failure=[]
            )
        )
        if not ok:
            return None
        return int(responses[0].response_put.header.revision)

    async def replace(self, key: bytes, value: bytes, mod_revision: int) -> int | None:
        """Puts key only if it is still at mod_revision; the new revision, or None when stale."""
        tx = self._client.transactions
        ok, responses = await self._call(
            lambda: self._client.transaction(
                compare=[tx.mod(key) == mod_revision], success=[tx.put(key, value)], failure=[]
            )
        )
        if not ok:
            return None
        return int(responses[0].response_put.header.revision)

    async def commit(self, checks: Sequence[ModIs], ops: Sequence[Op]) -> int | None:
        """Applies every op atomically if every check holds; the new revision, or None."""
        tx = self._client.transactions
        compare = [tx.mod(c.key) == c.mod_revision for c in checks]
        requests = []
        for op in ops:
            if isinstance(op, Put):
                requests.append(tx.put(op.key, op.value))
            elif isinstance(op, Delete):
                requests.append(tx.delete(op.key))
            else:
                requests.append(
                    tx.delete(op.prefix, range_end=aetcd.utils.prefix_range_end(op.prefix))
                )
        ok, responses = await self._call(
            lambda: self._client.transaction(compare=compare, success=requests, failure=[])
        )
        if not ok:
            return None
        for response in responses:
            kind = response.WhichOneof("response")
            if kind:
                return int(getattr(response, kind).header.revision)
        return 0

    async def grant_lease(self, ttl_s: int) -> int:
        lease = await self._call(lambda: self._client.lease(ttl_s))
        return int(lease.id)

    async def refresh_lease(self, lease_id: int) -> int:
        """Remaining TTL; 0 or less means the lease is gone."""
        reply = await self._call(lambda: self._client.refresh_lease(lease_id))
        return int(reply.TTL) if reply is not None else 0

    async def revoke_lease(self, lease_id: int) -> None:
        await self._call(lambda: self._client.revoke_lease(lease_id))


class WatchCache(Generic[T]):
    """A local copy of every key under a prefix, kept current by a watch.

    On any watch failure it re-reads the prefix and watches again from the new revision, so a
    restarted etcd or a compacted revision costs one resync, never a stale cache.
    """

    def __init__(self, etcd: Etcd, prefix: bytes, decode: Callable[[KV], T]) -> None:
        self._etcd = etcd
        self._prefix = prefix
        self._decode = decode
        self.items: dict[bytes, T] = {}
        self._ready = asyncio.Event()
        self._changed = asyncio.Condition()
        self.listeners: list[Callable[[bytes, T | None], None]] = []

    async def wait_ready(self, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            await self._ready.wait()

    async def wait_changed(self, timeout_s: float) -> None:
        """Returns after the next change, or raises TimeoutError."""
        async with asyncio.timeout(timeout_s):
            async with self._changed:
                await self._changed.wait()

    def _set(self, key: bytes, value: T | None) -> None:
        if value is None:
            self.items.pop(key, None)
        else:
            self.items[key] = value
        for listener in self.listeners:
            listener(key, value)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def run(self) -> None:
        delay = 0.1
        while True:
            watch = None
            try:
                kvs, revision = await self._etcd.get_prefix(self._prefix)
                fresh: dict[bytes, T] = {}
                for kv in kvs:
                    try:
                        fresh[kv.key] = self._decode(kv)
                    except Exception:
                        log.exception(
                            "undecodable etcd value", extra={"fields": {"key": kv.key.decode()}}
                        )
                for gone in set(self.items) - set(fresh):
                    self._set(gone, None)
                for key, value in fresh.items():
                    self._set(key, value)
                self._ready.set()
                await self._notify()
                watch = await self._etcd.raw.watch_prefix(self._prefix, start_revision=revision + 1)
                delay = 0.1
                async for event in watch:
                    if event.kind == "DELETE":
                        self._set(event.kv.key, None)
                    else:
                        kv = KV(event.kv.key, event.kv.value, event.kv.mod_revision, event.kv.lease)
                        try:
                            self._set(kv.key, self._decode(kv))
                        except Exception:
                            log.exception(
                                "undecodable etcd value", extra={"fields": {"key": kv.key.decode()}}
                            )
                    await self._notify()
                raise Unavailable("etcd watch ended")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning(
                    "etcd watch lost, resyncing",
                    extra={
                        "fields": {
                            "prefix": self._prefix.decode(),
                            "error": str(err) or type(err).__name__,
                        }
                    },
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if watch is not None:
                    try:
                        await asyncio.wait_for(watch.cancel(), 1.0)
                    except Exception:
                        pass
