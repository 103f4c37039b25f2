#!/usr/bin/env bash
# `make demo`: the main job end to end. Makes a sample checkpoint, starts a
# server on a free port, freezes the checkpoint with the CLI, runs the frozen
# graph and compares it with the original model's outputs. Stops the server
# whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=demo-out
rm -rf "$OUT"
mkdir -p "$OUT"

echo "== 1. a sample tf.train.Saver checkpoint"
python examples/make_sample_checkpoint.py "$OUT"
ls "$OUT/ckpt"

echo "== 2. tffreeze serve (port 0 = any free port)"
tffreeze serve --port 0 --data-dir "$OUT/data" > "$OUT/server.log" 2>&1 &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  grep -q "listening on" "$OUT/server.log" && break
  kill -0 $SERVER_PID 2>/dev/null || { cat "$OUT/server.log"; exit 1; }
  sleep 0.1
done
ADDR=$(grep -o 'listening on [^ ]*' "$OUT/server.log" | head -1 | cut -d' ' -f3)
echo "server at $ADDR"
export TFFREEZE_SERVER=$ADDR

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
