"""The library corpus (tests/libcorpus.py, issue 33): models built by model libraries
that others wrote (keras-bert, deepctr, segmentation-models, bert-tensorflow, tflearn,
...), reported apart from the hand-written corpus of bench/real_models.py.

For every model, side by side:
  * tffreeze without names: right / helpful refusal (not sure, the right outputs among
    the candidates) / unhelpful refusal / wrong (exit 0 with other names, or a graph that
    does not run or differs) / crash (INTERNAL, GRAPH_UNSUPPORTED);
  * tffreeze given the outputs: runs and matches the checkpoint's values within 1e-5?
  * TensorFlow's freeze_graph given the output node names: the same check.
Needs `make libcorpus-env` (and `make tf115` for the TF1 libraries; their models are
left out, and said, where it is missing).

usage: python bench/library_models.py [--json OUT] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import libcorpus  # noqa: E402
from conftest import start_server, stop_server  # noqa: E402

from tffreeze import FreezeClient  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    envs = libcorpus.available_envs()
    names = [n for n in (args.only or libcorpus.MODELS) if libcorpus.MODELS[n][0] in envs]
    missing = [n for n in (args.only or libcorpus.MODELS) if n not in names]
    if missing:
        print("left out (environment missing: make libcorpus-env / make tf115): %s" % ", ".join(missing))
    t = time.perf_counter()
    infos = libcorpus.build_all(libcorpus.default_root(), names)
    print("library corpus ready in %.1f s (%s)" % (time.perf_counter() - t, libcorpus.default_root()), flush=True)
    root = tempfile.mkdtemp(prefix="tffreeze-libcorpus-")
    rows = []
    server = start_server(os.path.join(root, "data"))
    try:
        with FreezeClient(server.target, timeout=900) as client:
            print("%-26s %-24s %-5s | %-17s | %-8s | %-8s" % ("model", "library", "env", "tffreeze no names",
                                                              "named", "freeze_graph"))
            for name in names:
                info = infos[name]
                row = {"model": name, "library": libcorpus.MODELS[name][1], "env": libcorpus.MODELS[name][0]}
                if "error" in info:
                    row["build"] = info["error"][-600:]
                    rows.append(row)
                    print("%-26s build failed:\n    %s" % (name, info["error"][-400:].replace("\n", "\n    ")))
                    continue
                row["version"] = info["version"]
                t = time.perf_counter()
                row["auto"] = list(libcorpus.grade_without_names(client, info, os.path.join(root, "a.pb"))) + [
                    time.perf_counter() - t]
                t = time.perf_counter()
                row["named"] = list(libcorpus.grade_with_names(client, info, os.path.join(root, "n.pb"))) + [
                    time.perf_counter() - t]
                row["freeze_graph"] = list(libcorpus.grade_freeze_graph(info, os.path.join(root, "fg.pb")))
                rows.append(row)
                print("%-26s %-24s %-5s | %-17s | %-8s | %-8s" % (
                    name, "%s %s" % (row["library"], row["version"]), row["env"], row["auto"][0], row["named"][0],
                    row["freeze_graph"][0]), flush=True)
                for mode, good in (("auto", ("right",)), ("named", ("match",)), ("freeze_graph", ("match",))):
                    if row[mode][0] not in good:
                        print("    %s: %s" % (mode, row[mode][1]))
    finally:
        stop_server(server)
        shutil.rmtree(root, ignore_errors=True)
    built = [r for r in rows if "auto" in r]
    print("\nlibrary corpus: %d models from %d libraries (%d did not build)" % (
        len(built), len({r["library"] for r in built}), len(rows) - len(built)))
    kinds = ["right", "helpful refusal", "unhelpful refusal", "wrong", "crash"]
    print("tffreeze without names: " + ", ".join("%d %s" % (sum(r["auto"][0] == k for r in built), k) for k in kinds))
    print("tffreeze given names:   %d/%d run and match (1e-5)" % (sum(r["named"][0] == "match" for r in built),
                                                                  len(built)))
    print("freeze_graph given names: %d/%d run and match (1e-5)" % (
        sum(r["freeze_graph"][0] == "match" for r in built), len(built)))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"rows": rows}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
