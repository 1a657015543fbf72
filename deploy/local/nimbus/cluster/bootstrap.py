r"""Envoy's bootstrap for deployments without the launcher (deploy/compose): the same template as
the local cluster (deploy/local/envoy.yaml.tmpl), filled from the environment, then exec Envoy.

    python -m nimbus.cluster.bootstrap --out /etc/nimbus/envoy.yaml \
        -- envoy -c /etc/nimbus/envoy.yaml

NIMBUS_GATEWAY_ADDR (default 0.0.0.0) and NIMBUS_GATEWAY_PORT (default 8080): the listener.
NIMBUS_ENVOY_ADMIN_PORT (default 9901): the admin interface, on 127.0.0.1 only.
NIMBUS_XDS_DIR (default /xds): the files the gateway-sync program writes; empty ones are written
when missing, so Envoy can start first.
NIMBUS_MAX_ZIP_MB and NIMBUS_GATEWAY_KEY_RPS/_KEY_BURST/_ANON_RPS/_ANON_BURST: as in the local
cluster.
"""

from __future__ import annotations

import argparse
import os
import string
import sys
from collections.abc import Mapping
from pathlib import Path

from nimbus.cluster import envoy
from nimbus.gateway import xds
from nimbus.gateway.stores.files import XdsDirectory


def render(env: Mapping[str, str], template: Path = envoy.TEMPLATE) -> str:
    zip_mb = int(env.get("NIMBUS_MAX_ZIP_MB", "") or envoy.DEFAULT_MAX_ZIP_MB)
    values: dict[str, object] = {
        "gateway_port": int(env.get("NIMBUS_GATEWAY_PORT", "") or 8080),
        "admin_port": int(env.get("NIMBUS_ENVOY_ADMIN_PORT", "") or 9901),
        "descriptor": env.get("NIMBUS_DESCRIPTOR", "") or str(envoy.DESCRIPTOR),
        "max_body_bytes": envoy.max_body_bytes(zip_mb),
        "stream_idle_timeout": envoy.STREAM_IDLE_TIMEOUT,
        "local_reply_mappers": envoy.local_reply_mappers(max_zip_mb=zip_mb),
        **envoy.common_values(
            Path(env.get("NIMBUS_XDS_DIR", "") or "/xds"),
            envoy.EdgeLimits.from_env(env),
            env.get("NIMBUS_GATEWAY_ADDR", "") or "0.0.0.0",
            Path(env["NIMBUS_PKI_DIR"]) if env.get("NIMBUS_PKI_DIR", "") else None,
        ),
    }
    return string.Template(template.read_text()).substitute(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, help="-- then the command to exec (envoy ...)"
    )
    args = parser.parse_args(argv)
    text = render(os.environ)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    xds_dir = Path(os.environ.get("NIMBUS_XDS_DIR", "") or "/xds")
    XdsDirectory(xds_dir).write(
        {n: d for n, d in xds.seed_files().items() if not (xds_dir / n).exists()}
    )
    command = [c for c in args.command if c != "--"] if args.command else []
    if command:
        sys.stdout.flush()
        os.execvp(command[0], command)


if __name__ == "__main__":
    main()
