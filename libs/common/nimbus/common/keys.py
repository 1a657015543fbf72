"""Every etcd key and prefix Nimbus uses. No other module builds a key."""

from __future__ import annotations

ROOT = "/nimbus"


def function(namespace: str, name: str) -> bytes:
    return f"{ROOT}/functions/{namespace}/{name}".encode()


def functions_prefix(namespace: str | None = None) -> bytes:
    if namespace is None:
        return f"{ROOT}/functions/".encode()
    return f"{ROOT}/functions/{namespace}/".encode()


def parse_function(key: bytes) -> tuple[str, str]:
    """(namespace, name) of a function key."""
    rest = key.decode()[len(f"{ROOT}/functions/") :]
    namespace, _, name = rest.partition("/")
    return namespace, name


def api_key(key_hash: str) -> bytes:
    return f"{ROOT}/apikeys/{key_hash}".encode()


def api_keys_prefix() -> bytes:
    return f"{ROOT}/apikeys/".encode()


def node(node_id: str) -> bytes:
    return f"{ROOT}/nodes/{node_id}".encode()


def nodes_prefix() -> bytes:
    return f"{ROOT}/nodes/".encode()


def instance(node_id: str, instance_id: str) -> bytes:
    return f"{ROOT}/instances/{node_id}/{instance_id}".encode()


def instances_prefix(node_id: str | None = None) -> bytes:
    if node_id is None:
        return f"{ROOT}/instances/".encode()
    return f"{ROOT}/instances/{node_id}/".encode()


def code_ref(sha256: str) -> bytes:
    """Marks a code blob as referenced; the blob GC keeps blobs that have one."""
    return f"{ROOT}/coderefs/{sha256}".encode()
