#!/usr/bin/env bash
# Launcher for tffreeze-cs (installed as client_csharp/bin/tffreeze-cs by `make csharp`).
# Finds the TensorFlow C library for `run`: the project's .venv (TF 2.x), or with
# `--runtime tf115` the TF 1.15 from `make tf115`, whose C API lives in
# _pywrap_tensorflow_internal.so and needs libpython3.7m preloaded.
set -euo pipefail
HERE="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"  # (through a symbolic link: where it points)
ROOT="$(cd "$HERE/../.." && pwd)"
if [[ -z "${TFFREEZE_DEFAULT_LIB:-}" ]]; then
  TFFREEZE_DEFAULT_LIB="$(ls -d "$ROOT"/.venv/lib/python3*/site-packages/tensorflow 2>/dev/null | head -n 1 || true)"
fi
TF115_DIR="${TFFREEZE_TF115:-$ROOT/.tf115}"
if [[ -z "${TFFREEZE_TF115_LIB:-}" ]]; then
  TFFREEZE_TF115_LIB="$TF115_DIR/lib/python3.7/site-packages/tensorflow_core/python/_pywrap_tensorflow_internal.so"
fi
export TFFREEZE_DEFAULT_LIB TFFREEZE_TF115_LIB
runtime=""
prev=""
for arg in "$@"; do
  [[ "$prev" == "--runtime" ]] && runtime="$arg"
  [[ "$arg" == --runtime=* ]] && runtime="${arg#--runtime=}"
  prev="$arg"
done
if [[ "$runtime" == "tf115" && "${1:-}" == "run" ]]; then  # another command refuses --runtime itself
  if [[ ! -f "$TFFREEZE_TF115_LIB" ]]; then
    echo "tffreeze-cs run: no TF 1.15 runtime at $TF115_DIR: run \`make tf115\` in the checkout (it needs Python 3.7: pyenv install 3.7.16, or make tf115 PY37=/path/to/python3.7), or run without --runtime tf115 [NOT_FOUND]" >&2
    exit 1
  fi
  home="$(sed -n 's/^home = //p' "$TF115_DIR/pyvenv.cfg")"
  libpython="$(ls "$home"/../lib/libpython3.7m.so.1.0 2>/dev/null || true)"
  export LD_PRELOAD="${libpython}${LD_PRELOAD:+:$LD_PRELOAD}"
fi
exec mono "$HERE/tffreeze-cs.exe" "$@"
