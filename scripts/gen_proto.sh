#!/usr/bin/env bash
# Generates the Python stubs into libs/gen and Envoy's descriptor set; `make proto` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
GRPC_INC="$("$PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
OUT=libs/gen
rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp"
PROTOS=$(find proto -name '*.proto' | sort)
"$PY" -m grpc_tools.protoc -Iproto -I"$SITE" -I"$GRPC_INC" \
  --python_out="$OUT.tmp" --grpc_python_out="$OUT.tmp" --pyi_out="$OUT.tmp" \
  --include_imports --include_source_info --descriptor_set_out="$OUT.tmp/nimbus.pb" $PROTOS
rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
echo "proto: stubs and descriptor set in $OUT"
