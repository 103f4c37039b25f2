"""Breadth: on the same set of checkpoints (every kind the tests build), how many
does TensorFlow's freeze_graph handle when given the output names, and how
many does tffreeze handle with names resolved automatically?

"Handled" means: the tool exits cleanly and its frozen graph, run on the fixed
inputs, gives the original model's outputs (within 1e-5). freeze_graph leaves
switches such as is_training as placeholders, so it is fed their inference
values; tffreeze binds them itself and is fed the model inputs only.

usage: python bench/breadth.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import models  # noqa: E402
from conftest import start_server, stop_server  # noqa: E402

from tffreeze import FreezeClient, TffreezeError  # noqa: E402

SWITCH_FEEDS = {"is_training:0": False, "keep_prob:0": 1.0}


def cases(root):
    """(name, model, how freeze_graph is called) for each checkpoint kind."""
    def d(name):
        return os.path.join(root, name)

    out = []
    for resource in (False, True):
        kind = "resource" if resource else "ref"
        out.append(("seed v1+v2 (%s)" % kind, models.seed_v1_v2(d("seed-" + kind), resource), "meta"))
        out.append(("renamed saver keys (%s)" % kind, models.dense(d("ren-" + kind), resource, saver_keys=True), "meta"))
        out.append(("partitioned (%s)" % kind, models.partitioned(d("part-" + kind), resource), "meta"))
        out.append(("no .meta + GraphDef (%s)" % kind, models.without_meta(d("nometa-" + kind) + "/ckpt", resource, False),
                    "graph"))
        out.append(("EMA-trained, raw values (%s)" % kind, models.ema_model(d("ema-" + kind), resource), "meta"))
    out.append(("placeholders + global_step", models.placeholders_global_step(d("gs"), True), "meta"))
    out.append(("output in a collection", models.dense(d("coll"), True, collection="pred_network"), "meta"))
    out.append(("training graph, cond BN (resource, cf v2)", models.training_graph(d("tr1"), True, False, True), "meta"))
    out.append(("training graph, cond BN (resource, cf v1)", models.training_graph(d("tr2"), True, True, False), "meta"))
    out.append(("training graph, cond BN (ref, cf v1)", models.training_graph(d("tr3"), False, True, True), "meta"))
    out.append(("while_loop + cond (resource, cf v2)", models.loop_and_cond(d("cf2"), True, False), "meta"))
    out.append(("while_loop + cond (ref, cf v1)", models.loop_and_cond(d("cf1"), False, True), "meta"))
    out.append(("SavedModel TF1 builder", models.saved_model_v1(d("sm1")), "saved_model"))
    out.append(("SavedModel TF2 (tf.Module)", models.saved_model_v2(d("sm2")), "saved_model"))
    out.append(("Keras 3 model.export", models.keras_export(d("keras")), "saved_model"))
    return out


def _signature_names(directory):
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel()
    with open(os.path.join(directory, "saved_model.pb"), "rb") as fh:
        sm.ParseFromString(fh.read())
    sig = sm.meta_graphs[0].signature_def["serving_default"]
    return ({a: sig.inputs[a].name for a in sig.inputs}, {a: sig.outputs[a].name for a in sig.outputs})


def run_anchor(name, model, how, out_pb):
    """freeze_graph with the output names a user would have to find; (ok, detail)."""
    if how == "saved_model":
        ins, outs = _signature_names(model.directory)
        feeds = {ins[a] if ":" in ins[a] else ins[a] + ":0": v for a, v in model.feeds.items()} \
            if not any(":" in k for k in model.feeds) else dict(model.feeds)
        expected = {outs[a]: v for a, v in model.expected.items()} \
            if not any(":" in k for k in model.expected) else dict(model.expected)
        args = ["--input_saved_model_dir", model.directory, "--input_graph", ""]
    else:
        feeds, expected = dict(model.feeds), dict(model.expected)
        prefix = os.path.join(model.directory, model.prefix)
        if how == "graph":
            args = ["--input_graph", model.extra["graph"], "--input_binary=true", "--input_checkpoint", prefix]
        else:
            args = ["--input_meta_graph", prefix + ".meta", "--input_binary=true", "--input_checkpoint", prefix]
        if "x:0" in feeds and "training" in name:
            feeds.update(SWITCH_FEEDS)
    output_nodes = sorted({k.split(":")[0] for k in expected})
    cmd = [sys.executable, "-m", "tensorflow.python.tools.freeze_graph", *args,
           "--output_node_names", ",".join(output_nodes), "--output_graph", out_pb]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
                          timeout=600)
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.strip().splitlines() if "Error" in l or "error" in l] or \
            proc.stderr.strip().splitlines()[-1:]
        return False, "exit %d: %s" % (proc.returncode, (lines[-1] if lines else "")[:150])
    return _compare(open(out_pb, "rb").read(), feeds, expected)


def _compare(graph_bytes, feeds, expected):
    try:
        got = models.run_frozen(graph_bytes, feeds, list(expected))
    except Exception as exc:  # the frozen graph does not load or run
        return False, "frozen graph fails: %s" % str(exc).strip().splitlines()[0][:150]
    for (k, want), value in zip(expected.items(), got):
        if not np.allclose(value, want, rtol=1e-5, atol=1e-5):
            return False, "wrong values for %s" % k
    return True, "ok"


def run_tffreeze(client, name, model, how):
    try:
        outcome = client.freeze(model.directory, graph_file=model.extra.get("graph") if how == "graph" else None)
    except TffreezeError as exc:
        return False, "%s: %s" % (exc.code, exc.message[:150])
    sig = outcome.manifest["signature"]
    feeds, expected = dict(model.feeds), dict(model.expected)
    if how == "saved_model" and sig and not any(":" in k for k in feeds):
        feeds = {sig["inputs"][a]["name"]: v for a, v in feeds.items()}
        expected = {sig["outputs"][a]["name"]: v for a, v in expected.items()}
    return _compare(outcome.graph_bytes, feeds, expected)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="tffreeze-breadth-")
    rows = []
    server = start_server(os.path.join(root, "data"))
    try:
        with FreezeClient(server.target) as client:
            for name, model, how in cases(os.path.join(root, "ckpts")):
                a_ok, a_why = run_anchor(name, model, how, os.path.join(root, "anchor.pb"))
                t_ok, t_why = run_tffreeze(client, name, model, how)
                rows.append({"case": name, "freeze_graph": a_ok, "freeze_graph_detail": a_why,
                             "tffreeze": t_ok, "tffreeze_detail": t_why})
                print("%-45s freeze_graph %-4s tffreeze %-4s %s" % (name, "ok" if a_ok else "FAIL",
                                                                    "ok" if t_ok else "FAIL",
                                                                    "" if a_ok else "(" + a_why + ")"), flush=True)
    finally:
        stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
    n = len(rows)
    print("\nfreeze_graph (names given): %d/%d    tffreeze (names resolved automatically): %d/%d"
          % (sum(r["freeze_graph"] for r in rows), n, sum(r["tffreeze"] for r in rows), n))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
