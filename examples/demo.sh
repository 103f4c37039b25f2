#!/usr/bin/env bash
# `make demo`: the main job end to end. Makes a sample checkpoint, freezes it
# with the CLI through your local server (started on demand, kept warm for the
# next calls, stopped after 30 idle minutes or by `tffreeze local-server stop`),
# runs the frozen graph and compares it with the original model's outputs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. a sample tf.train.Saver checkpoint"
# TensorFlow's own start-up lines (CUDA probing on a CPU machine) go to a log, shown on failure
python examples/make_sample_checkpoint.py "$OUT" 2> "$OUT/make_sample_checkpoint.log" \
  || { cat "$OUT/make_sample_checkpoint.log"; exit 1; }
ls "$OUT/ckpt"

echo "== 2. no server to start: any call starts your local server on demand (here explicitly, to show it)"
unset TFFREEZE_SERVER
tffreeze local-server start

echo "== 3. tffreeze inspect"
tffreeze inspect "$OUT/ckpt"

echo "== 4. tffreeze freeze (names resolved automatically)"
tffreeze freeze "$OUT/ckpt" -o "$OUT/model.pb" --manifest "$OUT/model.json"
cat "$OUT/model.json"

echo "== 5. tffreeze run on the frozen graph"
tffreeze run "$OUT/model.pb" --input x:0="$OUT/x.npy" --output probs:0="$OUT/probs.npy"
python - "$OUT" <<'PY'
import sys, numpy as np
out = sys.argv[1]
got, want = np.load(out + "/probs.npy"), np.load(out + "/expected.npy")
diff = float(np.max(np.abs(got - want)))
print("max |frozen - original| = %.3g" % diff)
sys.exit(0 if diff < 1e-5 else "frozen graph disagrees with the original model")
PY
echo "== demo OK: $OUT/model.pb + $OUT/model.json"
echo "   the local server stays warm: try  . .venv/bin/activate && tffreeze freeze $OUT/ckpt -o m.pb"
