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


def function_meta(namespace: str, name: str) -> bytes:
    """Per-function bookkeeping (the last version number); every version and alias change of one
    function rewrites it in the same transaction, which serialises them."""
    return f"{ROOT}/fnmeta/{namespace}/{name}".encode()


def version(namespace: str, name: str, number: str) -> bytes:
    return f"{ROOT}/versions/{namespace}/{name}/{number}".encode()


def versions_prefix(namespace: str | None = None, name: str | None = None) -> bytes:
    if namespace is None:
        return f"{ROOT}/versions/".encode()
    if name is None:
        return f"{ROOT}/versions/{namespace}/".encode()
    return f"{ROOT}/versions/{namespace}/{name}/".encode()


def alias(namespace: str, name: str, alias_name: str) -> bytes:
    return f"{ROOT}/aliases/{namespace}/{name}/{alias_name}".encode()


def aliases_prefix(namespace: str | None = None, name: str | None = None) -> bytes:
    if namespace is None:
        return f"{ROOT}/aliases/".encode()
    if name is None:
        return f"{ROOT}/aliases/{namespace}/".encode()
    return f"{ROOT}/aliases/{namespace}/{name}/".encode()


def triggers_prefix(namespace: str, name: str) -> bytes:
    return f"{ROOT}/triggers/{namespace}/{name}/".encode()


def trigger(namespace: str, name: str, trigger_id: str) -> bytes:
    return f"{ROOT}/triggers/{namespace}/{name}/{trigger_id}".encode()


def all_triggers_prefix() -> bytes:
    """Every trigger of every namespace (the invokers watch it)."""
    return f"{ROOT}/triggers/".encode()


def event_config_prefix(namespace: str, name: str) -> bytes:
    return f"{ROOT}/eventconfig/{namespace}/{name}/".encode()


def event_config(namespace: str, name: str) -> bytes:
    """A function's async settings (retries, event age, destinations); under a prefix of its own
    so the function's deletion clears it with a prefix delete that cannot touch a longer name."""
    return f"{ROOT}/eventconfig/{namespace}/{name}/config".encode()


def all_event_configs_prefix() -> bytes:
    return f"{ROOT}/eventconfig/".encode()


def owned_by_function(namespace: str, name: str) -> list[bytes]:
    """Every prefix a function's deletion must clear with it."""
    return [
        versions_prefix(namespace, name),
        aliases_prefix(namespace, name),
        triggers_prefix(namespace, name),
        event_config_prefix(namespace, name),
    ]


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


def load_report(replica: str) -> bytes:
    """An invoker replica's recent load per function version, under the replica's lease."""
    return f"{ROOT}/load/{replica}".encode()


def load_reports_prefix() -> bytes:
    return f"{ROOT}/load/".encode()


def scheduler_leader() -> bytes:
    return f"{ROOT}/leader/scheduler".encode()


def service_endpoint(service: str, replica: str) -> bytes:
    """A replica's registration (nimbus.common.registry), under the replica's own lease."""
    return f"{ROOT}/registry/{service}/{replica}".encode()


def registry_prefix(service: str | None = None) -> bytes:
    if service is None:
        return f"{ROOT}/registry/".encode()
    return f"{ROOT}/registry/{service}/".encode()


def rollout(service: str) -> bytes:
    """How a service's traffic is shared between API releases (nimbus.common.registry.Rollout)."""
    return f"{ROOT}/rollouts/{service}".encode()


def rollouts_prefix() -> bytes:
    return f"{ROOT}/rollouts/".encode()


def quotas(namespace: str) -> bytes:
    """A namespace's quotas (nimbus.common.quotas), set by an admin."""
    return f"{ROOT}/quotas/{namespace}".encode()


def quotas_prefix() -> bytes:
    return f"{ROOT}/quotas/".encode()
