#!/usr/bin/env bash
# The style checks: ruff's lint and format check over the tree, mypy --strict over the directories
# pyproject.toml's [tool.mypy] `files` lists. Runs all three and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN="${NIMBUS_VENV:-.venv}/bin"
failed=()
run() {
  printf '\033[1m==> %s\033[0m\n' "$*"
  "$@" || failed+=("$*")
}
run "$BIN/ruff" check .
run "$BIN/ruff" format --check .
run "$BIN/mypy"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'lint: failed: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "lint: clean"
