"""The cluster's PKI: one CA, one short-lived certificate per replica, reloaded when rotated.

Layout under the PKI directory ($NIMBUS_HOME/pki, mode 0700):

    ca.key                      the CA's private key (0600); only the launcher reads it
    ca.crt                      the CA certificate every peer trusts
    replicas/<replica>/identity.pem   the replica's certificate then its key (0600), one file so
                                a reader never sees a new certificate with an old key
    replicas/<replica>/cert.pem, key.pem   the same, split, for Envoy (its SDS file watches them)

A replica's certificate names its service and replica in two SANs: the URI
`spiffe://nimbus.internal/<service>/<replica>` (what servers check callers by) and the DNS name
`<service>.nimbus.internal` (what callers check servers by: every channel verifies that the
server it reached is the service it meant). Certificates live `DEFAULT_CERT_TTL_S` and are
re-issued once past half their life (`renew_due`), by the launcher; every process notices the new
file (`Identity.reload`) and uses it for new connections without a restart.

No cryptography here runs on the data path: handshakes are grpc's and OpenSSL's; this module only
issues, writes and reads PEM files.
"""

from __future__ import annotations

import datetime
import os
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TRUST_DOMAIN = "nimbus.internal"
SPIFFE_PREFIX = f"spiffe://{TRUST_DOMAIN}/"
# 24 h: a stolen certificate is worth a day at most.
DEFAULT_CERT_TTL_S = 24 * 3600
CA_TTL_S = 10 * 365 * 24 * 3600
# The identity of tools that are not services: the launcher's health checks, tests, operators.
OPERATOR = "operator"


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end of a connection, as its certificate says."""

    service: str
    replica: str


def spiffe_id(service: str, replica: str) -> str:
    return f"{SPIFFE_PREFIX}{service}/{replica}"


def server_name(service: str) -> str:
    """The DNS SAN every replica of `service` carries; channels verify servers against it."""
    return f"{service}.{TRUST_DOMAIN}"


def parse_spiffe(uri: str) -> Peer | None:
    if not uri.startswith(SPIFFE_PREFIX):
        return None
    parts = uri[len(SPIFFE_PREFIX) :].split("/")
    if len(parts) != 2 or not all(parts):
        return None
    return Peer(parts[0], parts[1])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write_private(path: Path, data: bytes) -> None:
    """Atomically (write aside, rename), created 0600 from the start."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


@dataclass(frozen=True, slots=True)
class Issued:
    cert_pem: bytes
    key_pem: bytes


class CertAuthority:
    """The cluster CA: created once (`load_or_create`), then issues replica certificates."""

    def __init__(self, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self._key = key
        self.cert = cert

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @classmethod
    def load_or_create(cls, pki_dir: Path) -> CertAuthority:
        _private_dir(pki_dir)
        key_path, cert_path = pki_dir / "ca.key", pki_dir / "ca.crt"
        if key_path.exists() and cert_path.exists():
            os.chmod(key_path, 0o600)
            key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"{key_path}: not an EC private key")
            return cls(key, x509.load_pem_x509_certificate(cert_path.read_bytes()))
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nimbus cluster CA")])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(seconds=CA_TTL_S))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_private(
            key_path,
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        cert_tmp = cert_path.with_name("ca.crt.tmp")
        cert_tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        os.replace(cert_tmp, cert_path)
        return cls(key, cert)

    def issue(
        self,
        service: str,
        replica: str,
        ttl_s: float = DEFAULT_CERT_TTL_S,
        now: datetime.datetime | None = None,
    ) -> Issued:
        """A certificate for one replica, good for client and server use, valid `ttl_s`."""
        now = now or _now()
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "nimbus"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, service),
                x509.NameAttribute(NameOID.COMMON_NAME, replica),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(seconds=ttl_s))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.UniformResourceIdentifier(spiffe_id(service, replica)),
                        x509.DNSName(server_name(service)),
                    ]
                ),
                critical=False,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        return Issued(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )


def replica_dir(pki_dir: Path, replica: str) -> Path:
    return pki_dir / "replicas" / replica


def identity_file(pki_dir: Path, replica: str) -> Path:
    return replica_dir(pki_dir, replica) / "identity.pem"


def write_identity(pki_dir: Path, replica: str, issued: Issued) -> Path:
    """Writes the replica's files, each atomically; identity.pem last (what services watch)."""
    d = _private_dir(replica_dir(pki_dir, replica))
    _write_private(d / "key.pem", issued.key_pem)
    _write_private(d / "cert.pem", issued.cert_pem)
    path = d / "identity.pem"
    _write_private(path, issued.cert_pem + issued.key_pem)
    return path


def _cert_of(path: Path) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None


def renew_due(cert: x509.Certificate | None, now: datetime.datetime) -> bool:
    """Missing, or past half its life."""
    if cert is None:
        return True
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) / 2


def ensure_identities(
    pki_dir: Path,
    identities: Iterable[tuple[str, str]],
    ttl_s: float = DEFAULT_CERT_TTL_S,
    *,
    force: bool = False,
    now: datetime.datetime | None = None,
) -> list[str]:
    """Creates the CA if needed and (re-)issues each (service, replica) certificate that is
    missing, due (`renew_due`), for another CA or another service, or all with `force`.
    Returns the replicas written."""
    now = now or _now()
    ca = CertAuthority.load_or_create(pki_dir)
    written = []
    for service, replica in identities:
        cert = _cert_of(identity_file(pki_dir, replica))
        stale = (
            cert is None
            or cert.issuer != ca.cert.subject
            or peer_of(cert) != Peer(service, replica)
            or renew_due(cert, now)
        )
        if force or stale:
            write_identity(pki_dir, replica, ca.issue(service, replica, ttl_s, now))
            written.append(replica)
    return written


def issued_identities(pki_dir: Path) -> list[tuple[str, str]]:
    """(service, replica) of every certificate under the directory."""
    found = []
    root = pki_dir / "replicas"
    for d in sorted(root.iterdir()) if root.is_dir() else ():
        cert = _cert_of(d / "identity.pem")
        peer = peer_of(cert) if cert is not None else None
        if peer is not None:
            found.append((peer.service, peer.replica))
    return found


def peer_of(cert: x509.Certificate) -> Peer | None:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        peer = parse_spiffe(uri)
        if peer is not None:
            return peer
    return None


class Identity:
    """This process's certificate, key and trusted CA, re-read when the files change.

    `generation` grows with every change, so holders of derived objects (channels, SSL contexts)
    know when to rebuild them; `reload()` is cheap (two stats) and safe from any thread."""

    def __init__(self, pki_dir: Path, replica: str) -> None:
        self.pki_dir = pki_dir
        self.replica = replica
        self.path = identity_file(pki_dir, replica)
        self.ca_path = pki_dir / "ca.crt"
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self.generation = 0
        self.cert_pem = b""
        self.key_pem = b""
        self.ca_pem = b""
        self.peer = Peer("", replica)
        self._contexts: list[ssl.SSLContext] = []
        if not self.reload():
            raise FileNotFoundError(str(self.path))

    def _read_stamp(self) -> tuple[int, int] | None:
        try:
            a, b = self.path.stat(), self.ca_path.stat()
        except OSError:
            return None
        return (a.st_mtime_ns ^ a.st_ino, b.st_mtime_ns ^ b.st_ino)

    def reload(self) -> bool:
        """Re-reads the files if they changed; True when the identity is loaded."""
        stamp = self._read_stamp()
        if stamp is None:
            return self.generation > 0
        if stamp == self._stamp:
            return True
        with self._lock:
            if stamp == self._stamp:
                return True
            try:
                blob = self.path.read_bytes()
                ca_pem = self.ca_path.read_bytes()
            except OSError:
                return self.generation > 0
            marker = b"-----BEGIN PRIVATE KEY-----"
            cut = blob.find(marker)
            if cut < 0:
                return self.generation > 0
            cert_pem, key_pem = blob[:cut], blob[cut:]
            cert = x509.load_pem_x509_certificate(cert_pem)
            peer = peer_of(cert)
            if peer is None:
                raise ValueError(f"{self.path}: the certificate names no nimbus identity")
            self.cert_pem, self.key_pem, self.ca_pem, self.peer = cert_pem, key_pem, ca_pem, peer
            self._stamp = stamp
            self.generation += 1
            for ctx in self._contexts:
                self._load_into(ctx)
        return True

    @property
    def service(self) -> str:
        return self.peer.service

    def _load_into(self, ctx: ssl.SSLContext) -> None:
        # load_cert_chain reads files; the split files are written before identity.pem and
        # hold the same pair once identity.pem changed.
        d = self.path.parent
        ctx.load_cert_chain(d / "cert.pem", d / "key.pem")

    def ssl_context(self, *, server: bool, peer_service: str | None = None) -> ssl.SSLContext:
        """An SSLContext with this identity that requires and verifies the peer's certificate
        against the cluster CA (a client also checks the server's name is `peer_service`'s).
        It follows rotations: the new certificate serves every later handshake."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_verify_locations(cadata=self.ca_pem.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED
        if not server:
            ctx.check_hostname = peer_service is not None
        self._load_into(ctx)
        with self._lock:
            self._contexts.append(ctx)
        return ctx


def peer_from_ssl(obj: ssl.SSLObject | ssl.SSLSocket | None) -> Peer | None:
    """The verified peer of a TLS connection (None without a verified certificate)."""
    if obj is None:
        return None
    info = obj.getpeercert()
    if not info:
        return None
    names: tuple[tuple[str, str], ...] = info.get("subjectAltName", ())  # type: ignore[assignment]
    for kind, value in names:
        if kind == "URI":
            peer = parse_spiffe(value)
            if peer is not None:
                return peer
    return None
