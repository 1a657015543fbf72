#!/usr/bin/env bash
# Rebuilds the console's editor bundle, console/static/vendor/editor.js (CodeMirror 6, esbuild),
# and its LICENSES.txt. Development time only: the output is committed, so `make up` needs no
# Node.js. Needs node and npm; installs the pinned packages of console/editor/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/../console/editor"
npm ci --no-audit --no-fund
node build.mjs
