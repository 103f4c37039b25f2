"""Real architectures (tests/corpus.py): how many does each way of freezing get
right, and how long does it take?

For every model of the corpus, in one run:
  * TensorFlow's freeze_graph, given the output node names (and fed the training
    switches' inference values it leaves as placeholders);
  * tffreeze through a fresh server: names resolved automatically, names given,
    and names given with the optimize option.
"Right" means: the tool succeeds, its frozen graph runs on the fixed inputs and
equals the original model's outputs (1e-5; optimize: 1e-4 abs + 1e-4 rel, as the
README states), and, for automatic names, the outputs are exactly the model's head
and the inputs its data inputs. A freeze without names may also refuse ("not sure")
listing the right outputs among its candidates: counted apart from right and wrong.

Then the optimize option's cost on a ResNet-50 (tf-slim resnet_v1_50, 1000
classes, 25.6 M parameters): optimized freeze time / plain freeze time.

usage: python bench/real_models.py [--json OUT] [--skip-resnet50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import corpus  # noqa: E402
import models  # noqa: E402
from conftest import start_server, stop_server  # noqa: E402

from tffreeze import FreezeClient, TffreezeError  # noqa: E402


def _switch_feeds(graph_bytes, feeds):
    """Placeholders freeze_graph leaves that the model's inputs do not cover:
    scalar training switches, fed their inference value."""
    from tensorflow.core.framework import graph_pb2

    g = graph_pb2.GraphDef.FromString(graph_bytes)
    extra = {}
    for n in g.node:
        scalar = "shape" in n.attr and not n.attr["shape"].shape.unknown_rank and not n.attr["shape"].shape.dim
        if n.op == "Placeholder" and n.name + ":0" not in feeds and scalar:
            extra[n.name + ":0"] = False if n.attr["dtype"].type == 10 else 1.0
    return extra


def _compare(graph_bytes, info, rtol, atol, feeds=None):
    try:
        got = models.run_frozen(graph_bytes, feeds or info["feeds"], info["outputs"])
    except Exception as exc:  # noqa: BLE001 - a graph that does not run is the finding
        return False, "frozen graph fails: %s" % " ".join(str(exc).split())[:160]
    worst = 0.0
    for name, value in zip(info["outputs"], got):
        want = np.asarray(info["expected"][name], np.float64)
        diff = np.abs(np.asarray(value, np.float64) - want)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.all(diff <= atol + rtol * np.abs(want)):
            return False, "wrong values for %s (max abs diff %.2g)" % (name, float(diff.max()))
    return True, "max abs diff %.2g" % worst


def run_freeze_graph(info, out_pb):
    prefix = os.path.join(info["dir"], info["prefix"])
    nodes = sorted({n.split(":")[0] for n in info["outputs"]})
    cmd = [sys.executable, "-m", "tensorflow.python.tools.freeze_graph", "--input_meta_graph", prefix + ".meta",
           "--input_binary=true", "--input_checkpoint", prefix, "--output_node_names", ",".join(nodes),
           "--output_graph", out_pb]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TF_USE_LEGACY_KERAS="1"))
    took = time.perf_counter() - t
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if "rror" in l] or proc.stderr.splitlines()[-1:]
        return False, "exit %d: %s" % (proc.returncode, (lines[-1] if lines else "")[:160]), took
    data = open(out_pb, "rb").read()
    # freeze_graph keeps what tffreeze cuts (an iterator): feed the training graph's names
    renamed = info.get("session_names", {})
    feeds = {renamed.get(k, k): v for k, v in info["feeds"].items()}
    feeds.update(_switch_feeds(data, feeds))
    ok, why = _compare(data, info, 1e-5, 1e-5, feeds)
    return ok, why, took


def run_tffreeze(client, info, out_pb, mode):
    kwargs = {}
    if mode in ("explicit", "optimize"):
        kwargs["outputs"] = info["outputs"]
    if mode == "optimize":
        kwargs["optimize"] = True
    t = time.perf_counter()
    try:
        outcome = client.freeze(info["dir"], out_pb, **kwargs)
    except TffreezeError as exc:
        listed = exc.metadata.get("candidates", "").split(",")
        if mode == "auto" and exc.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS" and set(info["outputs"]) <= set(listed):
            return "refused", "not sure; the right outputs are among the candidates", time.perf_counter() - t
        return False, "%s %s: %s" % (exc.code, exc.reason, exc.message[:160]), time.perf_counter() - t
    took = time.perf_counter() - t
    m = outcome.manifest
    if mode == "auto":
        outs, ins = sorted(o["name"] for o in m["outputs"]), sorted(i["name"] for i in m["inputs"])
        if outs != sorted(info["outputs"]) or ins != sorted(info["inputs"]):
            return False, "names: outputs %s inputs %s" % (outs, ins), took
    tol = (1e-4, 1e-4) if mode == "optimize" else (1e-5, 1e-6)
    ok, why = _compare(open(out_pb, "rb").read(), info, *tol)
    return ok, why, took


def resnet50(directory):
    """tf-slim's resnet_v1_50 at its real size, variables initialised and saved."""
    code = r"""
import os, sys
sys.path.insert(0, %r)
import corpus
tf, tf1 = corpus._tf()
slim = corpus._slim()
from tf_slim.nets import resnet_v1
g = tf.Graph()
with g.as_default():
    x = tf1.placeholder(tf.float32, [None, 224, 224, 3], name="images")
    with slim.arg_scope(resnet_v1.resnet_arg_scope()):
        net, ep = resnet_v1.resnet_v1_50(x, num_classes=1000, is_training=False)
    with tf1.Session() as s:
        s.run(tf1.global_variables_initializer())
        tf1.train.Saver().save(s, os.path.join(%r, "model.ckpt"))
print(ep["predictions"].name)
""" % (os.path.join(HERE, "..", "tests"), directory)
    os.makedirs(directory, exist_ok=True)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip().splitlines()[-1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--skip-resnet50", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    infos = corpus.build_all(corpus.default_root())
    print("corpus ready in %.1f s" % (time.perf_counter() - t), flush=True)
    root = tempfile.mkdtemp(prefix="tffreeze-real-")
    rows = []
    modes = ["freeze_graph", "auto", "explicit", "optimize"]
    server = start_server(os.path.join(root, "data"))
    try:
        with FreezeClient(server.target, timeout=900) as client:
            for name, info in infos.items():
                row = {"model": name}
                row["freeze_graph"] = run_freeze_graph(info, os.path.join(root, "fg.pb"))
                for mode in modes[1:]:
                    row[mode] = run_tffreeze(client, info, os.path.join(root, mode + ".pb"), mode)
                rows.append(row)
                print("%-20s " % name + "  ".join("%s %s %5.2fs" % (
                    m, {True: "ok  ", "refused": "ask "}.get(row[m][0], "FAIL"), row[m][2]) for m in modes), flush=True)
                for m in modes:
                    if row[m][0] is not True:
                        print("    %s: %s" % (m, row[m][1]))
            print()
            for m in modes:
                right = sum(r[m][0] is True for r in rows)
                refused = sum(r[m][0] == "refused" for r in rows)
                print("%-13s %d/%d right%s, %.1f s in all" % (
                    m, right, len(rows), ", %d refused listing the right outputs, %d wrong" %
                    (refused, len(rows) - right - refused) if m == "auto" else "", sum(r[m][2] for r in rows)))
            summary = {"rows": [{k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for r in rows]}
            if not args.skip_resnet50:
                d = os.path.join(root, "resnet50")
                out = resnet50(d)
                times = {}
                for opt in (False, True, False, True):
                    t = time.perf_counter()
                    client.freeze(d, os.path.join(root, "r50-%s.pb" % opt), outputs=[out], optimize=opt)
                    times.setdefault(opt, []).append(time.perf_counter() - t)
                plain, optimized = min(times[False]), min(times[True])
                print("\nResNet-50 (%s): plain freeze %.2f s, with optimize %.2f s: optimize costs %.2fx (goal <= 2x)"
                      % (out, plain, optimized, optimized / plain))
                summary["resnet50"] = {"plain_s": plain, "optimize_s": optimized, "ratio": optimized / plain}
    finally:
        stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
