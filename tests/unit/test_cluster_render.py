"""The local cluster's supervisord.conf and envoy.yaml, rendered from deploy/local/cluster.toml."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest
from nimbus.cluster import envoy, render, spec
from nimbus.cluster.cluster import stop_levels
from nimbus.cluster.layout import Layout
from supervisor.datatypes import RestartUnconditionally
from supervisor.options import ServerOptions

PROGRAMS = [
    "etcd",
    "nats",
    "redis",
    "envoy",
    "api-1",
    "api-2",
    "funcmgr",
    "scheduler-1",
    "scheduler-2",
    "invoker-1",
    "invoker-2",
    "node-agent-1",
    "gateway-sync",
]
BINS = {
    "etcd": "/opt/bin/etcd",
    "nats": "/opt/bin/nats-server",
    "redis": "/opt/bin/redis-server",
    "envoy": "/opt/bin/envoy",
}
GATEWAY = 18123


@pytest.fixture
def cluster_spec() -> spec.ClusterSpec:
    return spec.load()


def _context(tmp_path: Path, cluster_spec: spec.ClusterSpec) -> render.Context:
    layout = Layout.at(tmp_path / "home")
    layout.ensure()
    port_map = {name: 21000 + i for i, name in enumerate(cluster_spec.port_names)}
    redis_urls = {"invoker": "unix://invoker:pw@/home/run/redis/redis.sock?db=0"}
    return render.Context(layout, port_map, GATEWAY, BINS, "/venv/bin/python", redis_urls)


def _parse(tmp_path: Path, text: str) -> dict:
    """supervisord's own parser reads the file: name -> ProcessConfig."""
    path = tmp_path / "supervisord.conf"
    path.write_text(text)
    options = ServerOptions()
    options.realize(args=["-c", str(path)])
    return {p.name: p for g in options.process_group_configs for p in g.process_configs}


def test_spec_has_every_program(cluster_spec):
    assert sorted(cluster_spec.names) == sorted(PROGRAMS)
    assert cluster_spec.program("node-agent-1").env["NIMBUS_NODE_ID"] == "node-{replica}"


def test_nimbus_nodes_sets_the_node_agent_count():
    from nimbus.cluster import spec

    loaded = spec.load(spec.DEFAULT_SPEC, {"NIMBUS_NODES": "3"})
    assert [p.name for p in loaded.replicas("node-agent")] == [
        "node-agent-1",
        "node-agent-2",
        "node-agent-3",
    ]
    with pytest.raises(spec.SpecError, match="NIMBUS_NODES"):
        spec.load(spec.DEFAULT_SPEC, {"NIMBUS_NODES": "zero"})


def test_priorities_start_infra_first_and_envoy_last(cluster_spec):
    prio = {p.name: p.priority for p in cluster_spec.programs}
    infra = max(prio[n] for n in ("etcd", "nats", "redis"))
    core = {prio[n] for n in ("funcmgr", "scheduler-1", "scheduler-2", "node-agent-1")}
    front = {prio[n] for n in ("api-1", "api-2", "invoker-1", "invoker-2")}
    assert infra < min(core) and max(core) < min(front) and max(front) < prio["envoy"]
    levels = stop_levels(cluster_spec.programs)
    assert levels[0] == ["envoy"] and set(levels[-1]) == {"etcd", "nats", "redis"}


def test_supervisord_conf_has_every_program_with_restart_policy(tmp_path, cluster_spec):
    ctx = _context(tmp_path, cluster_spec)
    text = render.supervisord_conf(cluster_spec, ctx, {})
    programs = _parse(tmp_path, text)
    assert sorted(programs) == sorted(PROGRAMS)
    for name, p in programs.items():
        assert p.autorestart is RestartUnconditionally
        assert (p.startsecs, p.startretries, p.stopwaitsecs) == (1, 100, 15)
        assert p.stopasgroup and p.killasgroup and p.redirect_stderr
        assert p.stdout_logfile == str(ctx.layout.log(name))
    assert f"file={ctx.layout.socket}" in text


def test_commands_use_the_real_binaries_and_ports(tmp_path, cluster_spec):
    ctx = _context(tmp_path, cluster_spec)
    programs = _parse(tmp_path, render.supervisord_conf(cluster_spec, ctx, {}))
    port = ctx.ports
    home = str(ctx.layout.home)
    etcd = shlex.split(programs["etcd"].command)
    assert etcd[0] == BINS["etcd"]
    # etcd takes clients over mutual TLS only (issue 16.2)
    assert f"https://127.0.0.1:{port['etcd']}" in etcd and "--client-cert-auth" in etcd
    assert etcd[etcd.index("--trusted-ca-file") + 1] == f"{home}/pki/ca.crt"
    assert f"default=http://127.0.0.1:{port['etcd_peer']}" in etcd
    assert etcd[etcd.index("--data-dir") + 1] == f"{home}/etcd"
    redis = shlex.split(programs["redis"].command)
    assert redis[redis.index("--save") + 1] == ""
    # no TCP listener: a Unix socket and ACL users (issue 16.2)
    assert redis[redis.index("--port") + 1] == "0"
    assert redis[redis.index("--unixsocket") + 1] == f"{home}/run/redis/redis.sock"
    assert redis[redis.index("--aclfile") + 1] == f"{home}/pki/redis.acl"
    nats = shlex.split(programs["nats"].command)
    assert nats[nats.index("-m") + 1] == str(port["nats_monitor"]) and "-js" in nats
    assert nats[nats.index("-c") + 1] == f"{home}/run/nats.conf"
    assert shlex.split(programs["envoy"].command)[:3] == [
        BINS["envoy"],
        "-c",
        f"{home}/run/envoy.yaml",
    ]
    assert shlex.split(programs["api-2"].command) == ["/venv/bin/python", "-m", "nimbus.api"]
    assert shlex.split(programs["node-agent-1"].command) == [
        "/venv/bin/python",
        "-m",
        "nimbus.nodeagent",
    ]


def test_service_environment(tmp_path, cluster_spec):
    ctx = _context(tmp_path, cluster_spec)
    launcher_env = {
        "NIMBUS_LOG_LEVEL": "DEBUG",
        "OTEL_RESOURCE_ATTRIBUTES": "a=1,b=2",
        "PATH": "/x",
        "NIMBUS_HOME": "/elsewhere",
        "NIMBUS_WEIRD": "50% 'quoted' a,b",
    }
    text = render.supervisord_conf(cluster_spec, ctx, launcher_env, {"NIMBUS_DRAIN_S": "2"})
    programs = _parse(tmp_path, text)
    port = ctx.ports
    env = programs["invoker-2"].environment
    assert env == {
        "NIMBUS_LOG_LEVEL": "DEBUG",
        "OTEL_RESOURCE_ATTRIBUTES": "a=1,b=2",
        "NIMBUS_WEIRD": "50% 'quoted' a,b",
        "NIMBUS_DRAIN_S": "2",
        "NIMBUS_HOME": str(ctx.layout.home),
        "NIMBUS_REPLICA": "invoker-2",
        "NIMBUS_LISTEN_ADDR": f"127.0.0.1:{port['invoker-2']}",
        "NIMBUS_ETCD_ENDPOINT": f"127.0.0.1:{port['etcd']}",
        "NIMBUS_NATS_URL": f"nats://127.0.0.1:{port['nats']}",
        # its own ACL user on Redis's Unix socket
        "NIMBUS_REDIS_URL": "unix://invoker:pw@/home/run/redis/redis.sock?db=0",
        "NIMBUS_FUNCMGR_ADDR": f"127.0.0.1:{port['funcmgr']}",
        "NIMBUS_SCHEDULER_ADDR": f"127.0.0.1:{port['scheduler-1']},127.0.0.1:{port['scheduler-2']}",
        "NIMBUS_GATEWAY_PORT": str(GATEWAY),
        "NIMBUS_METRICS_ADDR": f"127.0.0.1:{port['invoker-2-metrics']}",
        "PYTHONUNBUFFERED": "1",
        "NIMBUS_HTTP_LISTEN_ADDR": f"127.0.0.1:{port['invoker-2-http']}",
    }
    assert port["invoker-1-http"] != port["invoker-2-http"]
    # Every service replica has a metrics port of its own.
    metrics = {
        p.name: programs[p.name].environment["NIMBUS_METRICS_ADDR"]
        for p in cluster_spec.programs
        if p.service
    }
    assert len(set(metrics.values())) == len(metrics) and {
        "api-1",
        "gateway-sync",
        "node-agent-1",
    } <= set(metrics)
    assert programs["node-agent-1"].environment["NIMBUS_NODE_ID"] == "node-1"
    assert "NIMBUS_NODE_ID" not in programs["api-1"].environment
    assert not programs["etcd"].environment  # infrastructure gets supervisord's environment only


def test_only_renders_the_chosen_programs(tmp_path, cluster_spec):
    ctx = _context(tmp_path, cluster_spec)
    text = render.supervisord_conf(cluster_spec, ctx, {}, only={"etcd", "redis"})
    assert sorted(_parse(tmp_path, text)) == ["etcd", "redis"]


def test_values_that_would_break_the_ini_file_are_refused(tmp_path, cluster_spec):
    ctx = _context(tmp_path, cluster_spec)
    for bad in ("a ; b", "both \" and '", "'quoted'", "two\nlines"):
        with pytest.raises(render.RenderError, match="NIMBUS_BAD"):
            render.supervisord_conf(cluster_spec, ctx, {}, {"NIMBUS_BAD": bad})
        # from the launcher's own environment such a variable is left out, not fatal
        programs = _parse(tmp_path, render.supervisord_conf(cluster_spec, ctx, {"NIMBUS_BAD": bad}))
        assert "NIMBUS_BAD" not in programs["api-1"].environment


def test_a_long_home_gets_a_short_socket_path(tmp_path):
    short = Layout.at(tmp_path / "h")
    assert short.socket == short.run / "supervisor.sock"
    long = Layout.at(tmp_path / ("x" * 120))
    assert len(str(long.socket)) < 100 and str(long.socket).startswith("/tmp/nimbus-")
    assert long.socket != Layout.at(tmp_path / ("y" * 120)).socket


def test_envoy_config_routes_to_the_replicas(cluster_spec, tmp_path):
    port_map = {name: 21000 + i for i, name in enumerate(cluster_spec.port_names)}
    text = envoy.render(cluster_spec, port_map, GATEWAY, xds_dir=tmp_path / "xds")
    assert f"port_value: {GATEWAY}" in text
    assert f"port_value: {port_map['envoy_admin']}" in text
    # api and invoker replicas come from the registry by file-based EDS, one cluster per release,
    # and the invokers' HTTP listeners (REST invoke, HTTP triggers) too
    for cluster in ("api_v1", "api_v2", "invoker_v1", "invoker_v2", "invoker_http"):
        assert f'path: "{tmp_path}/xds/eds_{cluster}.json"' in text
    assert f'path: "{tmp_path}/xds/rtds.json"' in text
    assert 'prefix: "/fn/"' in text
    assert 'regex: "/v1/functions/[^/]+:(invoke|invokeAsync)"' in text
    assert str(envoy.DESCRIPTOR) in text
    assert "reject_unknown_query_parameters: true" in text
    assert "${" not in text


def test_envoy_accepts_the_rendered_config(tmp_path, cluster_spec):
    binary = envoy_binary()
    if not envoy.DESCRIPTOR.exists():
        pytest.skip(f"{envoy.DESCRIPTOR} missing: run make proto")
    port_map = {name: 21000 + i for i, name in enumerate(cluster_spec.port_names)}
    path = tmp_path / "envoy.yaml"
    from nimbus.common import pki
    from nimbus.gateway import xds
    from nimbus.gateway.stores.files import XdsDirectory

    XdsDirectory(tmp_path / "xds").write(xds.seed_files())
    pki_dir = tmp_path / "pki"
    pki.ensure_identities(pki_dir, [("envoy", envoy.ENVOY_REPLICA)])
    envoy.sds_file(pki_dir).write_text(envoy.sds_document(pki_dir))
    path.write_text(
        envoy.render(cluster_spec, port_map, GATEWAY, xds_dir=tmp_path / "xds", pki_dir=pki_dir)
    )
    # Envoy's upstreams to api and invoker speak mTLS, each checking the upstream's identity
    text = path.read_text()
    # api_v1, api_v2, invoker_v1, invoker_v2 and the invokers' HTTP listeners
    assert text.count("UpstreamTlsContext") == 5
    assert '"prefix": "spiffe://nimbus.internal/api/"' in text
    assert '"prefix": "spiffe://nimbus.internal/invoker/"' in text
    result = subprocess.run(
        [binary, "--mode", "validate", "-c", str(path), "--log-level", "warn"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Unknown" not in result.stdout + result.stderr  # e.g. an unknown retry_on token


def envoy_binary() -> str:
    from nimbus.cluster import binaries

    return binaries.resolve({"envoy"})["envoy"]
