#!/usr/bin/env bash
# Generate the Python messages and stubs from protos/ into api_py/tffreeze_api/v1/
# (protoc writes package tffreeze.v1, which the API package ships as tffreeze_api.v1).
# Used by `make gen` and the Dockerfile; the output is never edited by hand.
#   tools/gen_python.sh PYTHON   (a Python with grpcio-tools)
set -euo pipefail
PY="${1:-python3}"
cd "$(dirname "$0")/.."
OUT=api_py/tffreeze_api/v1
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$PY" -m grpc_tools.protoc -Iprotos --python_out="$TMP" --pyi_out="$TMP" --grpc_python_out="$TMP" protos/tffreeze/v1/*.proto
mkdir -p "$OUT"
for f in "$TMP"/tffreeze/v1/*.py*; do
  sed -e 's/^from tffreeze\.v1 import/from tffreeze_api.v1 import/' "$f" > "$OUT/$(basename "$f")"
done
printf '"""Generated from protos/tffreeze/v1 by `make gen`. Do not edit."""\n' > "$OUT/__init__.py"
