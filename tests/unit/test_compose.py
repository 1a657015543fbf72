"""deploy/compose: the compose file is valid by the Compose Specification's JSON schema (Docker
is not on these machines), has every part of the cluster, and its Envoy config is the local
cluster's template, which Envoy accepts."""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from nimbus.cluster import binaries, bootstrap, envoy
from nimbus.cluster.layout import REPO
from nimbus.gateway import xds
from nimbus.gateway.stores.files import XdsDirectory

COMPOSE = REPO / "deploy" / "compose"
# The Compose Specification's schema as the docker-compose 1.29.2 wheel on PyPI ships it
# (compose/config/compose_spec.json, Apache-2.0), vendored unchanged.
SCHEMA = COMPOSE / "compose-spec.json"
NIMBUS = {
    "funcmgr",
    "scheduler-1",
    "scheduler-2",
    "api-1",
    "api-2",
    "invoker-1",
    "invoker-2",
    "node-agent-1",
    "node-agent-2",
    "gateway-sync",
    "envoy",
    "init",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def test_valid_by_the_compose_spec_schema(compose):
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    errors = [
        f"{list(e.path)}: {e.message}"
        for e in jsonschema.Draft201909Validator(schema).iter_errors(compose)
    ]
    assert errors == []
    # the schema catches mistakes (it is not vacuous)
    broken = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())
    broken["services"]["api-1"]["privilegd"] = True
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


def test_every_part_of_the_cluster(compose):
    services = compose["services"]
    assert set(services) == {"etcd-1", "etcd-2", "etcd-3", "nats", "redis"} | NIMBUS
    assert {f"etcd-{i}" for i in (1, 2, 3)} <= set(services)
    assert "-js" in services["nats"]["command"]
    for name in ("node-agent-1", "node-agent-2"):
        assert (
            services[name]["privileged"] is True
            and services[name]["environment"]["NIMBUS_SANDBOX"] == "runc"
        )
    for name, svc in services.items():
        if name != "init":
            assert "healthcheck" in svc, name
    # one image for every Nimbus program; the command picks the module
    for name in NIMBUS:
        svc = services[name]
        assert (
            svc["build"] == {"context": "../..", "dockerfile": "deploy/compose/Dockerfile"}
            and svc["image"] == "nimbus:dev"
        )
        module = (svc.get("entrypoint") or ["python", "-m", svc["command"][0]])[2]
        assert importlib.util.find_spec(module) is not None, module
    assert services["envoy"]["ports"] == ["8080:8080"]


def test_addresses_line_up(compose):
    services = compose["services"]
    subnet = ipaddress.ip_network(compose["networks"]["nimbus"]["ipam"]["config"][0]["subnet"])
    ips = {name: svc["networks"]["nimbus"]["ipv4_address"] for name, svc in services.items()}
    assert len(set(ips.values())) == len(ips) and all(
        ipaddress.ip_address(ip) in subnet for ip in ips.values()
    )
    env = {name: svc.get("environment", {}) for name, svc in services.items()}
    for name in NIMBUS - {"envoy", "init"}:
        assert env[name]["NIMBUS_LISTEN_ADDR"].split(":")[0] == ips[name], name
        assert env[name]["NIMBUS_REPLICA"] == name
    assert env["api-1"]["NIMBUS_FUNCMGR_ADDR"] == env["funcmgr"]["NIMBUS_LISTEN_ADDR"]
    assert env["api-1"]["NIMBUS_SCHEDULER_ADDR"] == ",".join(
        env[s]["NIMBUS_LISTEN_ADDR"] for s in ("scheduler-1", "scheduler-2")
    )
    # The invokers' HTTP listeners reach Envoy through the registry (gateway-sync), not its env.
    assert all(env[s]["NIMBUS_HTTP_LISTEN_ADDR"] for s in ("invoker-1", "invoker-2"))
    assert (
        "xds:/xds" in services["gateway-sync"]["volumes"]
        and "xds:/xds" in services["envoy"]["volumes"]
    )


def test_dockerfile_copies_what_exists():
    text = (COMPOSE / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            assert (REPO / line.split()[1]).exists(), line
    assert 'ENTRYPOINT ["python", "-m"]' in text and "runc" in text


def test_envoy_accepts_the_compose_config(compose, tmp_path: Path):
    if not envoy.DESCRIPTOR.exists():
        pytest.skip("run make proto")
    env = {k: str(v) for k, v in compose["services"]["envoy"]["environment"].items()}
    env["NIMBUS_XDS_DIR"] = str(tmp_path / "xds")
    XdsDirectory(tmp_path / "xds").write(xds.seed_files())
    config = tmp_path / "envoy.yaml"
    config.write_text(bootstrap.render(env))
    parsed = yaml.safe_load(config.read_text())
    assert (
        parsed["static_resources"]["listeners"][0]["address"]["socket_address"]["address"]
        == "0.0.0.0"
    )
    assert parsed["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    result = subprocess.run(
        [
            binaries.resolve({"envoy"})["envoy"],
            "--mode",
            "validate",
            "-c",
            str(config),
            "--log-level",
            "warn",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
