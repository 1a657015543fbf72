"""`python -m nimbus.cluster.credentials --home DIR --endpoint URL`: the admin key and
credentials.json, as the local launcher makes them on the first start (for deploy/compose)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

from nimbus.common.bootstrap import ensure_admin_credentials
from nimbus.common.config import get_hostport
from nimbus.common.etcd import Etcd


async def run(home: Path, endpoint: str) -> Path:
    host, port = get_hostport(os.environ, "NIMBUS_ETCD_ENDPOINT", "127.0.0.1:2379")
    etcd = Etcd(host, port)
    try:
        await etcd.wait_ready(120)
        home.mkdir(parents=True, exist_ok=True)
        return await ensure_admin_credentials(etcd, home, endpoint)
    finally:
        await etcd.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--endpoint", required=True)
    args = parser.parse_args()
    print(f"nimbus: admin credentials in {asyncio.run(run(args.home, args.endpoint))}")


if __name__ == "__main__":
    main()
