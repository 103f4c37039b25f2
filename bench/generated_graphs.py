"""Generated training graphs with known answers (tests/generator.py), full size: how
many does a freeze without names get right, per half (tune / held-out), and which
part combinations give the wrong answers?

Builds N combinations of each half (seed 33, the same list every run; the first ones
are the test's sample), freezes each without names through a fresh server (two
workers) and the Python client, grades it and prints:
  * the per-half table (right / refused_right / refused_other / wrong / crash);
  * per half, every part variant with its rate of wrong answers (and of
    refused_other), worst first;
  * the pairs of part variants most over-represented among the wrong answers;
  * what makes answers wrong: each extra output traced to the part that made it
    (by its scope), missing head or loop outputs;
  * the most common wrong answers by pattern, each with its smallest example;
  * a single-part sweep: each half's baseline (every kind's first variant of that
    half) and the baseline with one part changed -- the minimal examples.

usage: python bench/generated_graphs.py [--per-half N] [--seed S] [--json OUT] | --report JSON
"""

from __future__ import annotations

import argparse
import collections
import itertools
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import generator as G  # noqa: E402
from conftest import start_server, stop_server  # noqa: E402

from tffreeze import FreezeClient  # noqa: E402


def _breakdown(rows, half):
    mine = [r for r in rows if r["half"] == half]
    print("\n%s: part variants by rate of wrong answers (wrong / refused_other / combinations)" % half)
    bad = {r["key"] for r in mine if r["verdict"] == "wrong"}
    other = {r["key"] for r in mine if r["verdict"] == "refused_other"}
    counts = collections.defaultdict(lambda: [0, 0, 0])
    for r in mine:
        for part in r["combo"].split(","):
            c = counts[part]
            c[0] += r["key"] in bad
            c[1] += r["key"] in other
            c[2] += 1
    for part, (w, o, n) in sorted(counts.items(), key=lambda kv: (-kv[1][0] / kv[1][2], kv[0])):
        print("  %-40s %4d %4d %4d   %3.0f%% wrong" % (part, w, o, n, 100.0 * w / n))
    # pairs: how much more often a pair of variants is in a wrong answer than in all combinations
    pair_all, pair_bad = collections.Counter(), collections.Counter()
    for r in mine:
        parts = [p for p in r["combo"].split(",") if not p.endswith("=none")]
        for pair in itertools.combinations(parts, 2):
            pair_all[pair] += 1
            pair_bad[pair] += r["verdict"] == "wrong"
    rate = sum(r["verdict"] == "wrong" for r in mine) / max(1, len(mine))
    lifted = sorted(((pair_bad[p] / pair_all[p], pair_bad[p], pair_all[p], p) for p in pair_all if pair_all[p] >= 4),
                    reverse=True)[:12]
    print("  pairs most often wrong (overall rate %.0f%%):" % (100 * rate))
    for share, w, n, pair in lifted:
        print("    %3.0f%%  %2d/%-3d %s + %s" % (100 * share, w, n, pair[0], pair[1]))


def _patterns(rows):
    """Wrong answers grouped by what the extra or missing outputs look like, with the
    example that has the fewest non-"none" parts."""
    groups = collections.defaultdict(list)
    for r in rows:
        if r["verdict"] not in ("wrong", "refused_other"):
            continue
        if r["verdict"] == "refused_other":
            key = "refused, right outputs not among the first candidates (%s)" % r["reason"]
        else:
            want, got = set(r["right_outputs"]), set(r.get("outputs", []))
            extra = sorted(_shape(t) for t in got - want)
            missing = sorted(_shape(t) for t in want - got)
            key = "extra %s / missing %s%s" % (extra or "-", missing or "-",
                                                " / inputs differ" if r.get("inputs") != r["right_inputs"] else "")
        groups[key].append(r)
    print("\nmost common wrong answers (wrong and refused_other), smallest example each:")
    for key, members in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:15]:
        ex = min(members, key=lambda r: (sum(not p.endswith(("=none", "=top_level", "=placeholder", "=sgd"))
                                             for p in r["combo"].split(",")), r["combo"]))
        halves = collections.Counter(m["half"] for m in members)
        print("  %3d  (tune %d, heldout %d)  %s" % (len(members), halves["tune"], halves["heldout"], key))
        print("       e.g. %s" % ex["combo"])
        print("            %s" % ex["detail"][:300])


CULPRITS = (  # where an extra output comes from, by name (the generator's scopes)
    ("aux/", "extra=aux_head*: the auxiliary head"), ("pretrain/", "extra=pretrain_*: the pre-training head"),
    ("loss_network/", "frozen=loss_network: inside the fixed loss network"),
    ("teacher/", "frozen=teacher: the teacher"), ("discriminator/", "optimizer=gan_*: the discriminator"),
    ("batchnorm/", "switch=batchnorm_*: the batch norm's output"), ("cond/", "switch=dropout_default: the dropout cond"),
    ("dropout/", "switch=keep_prob_default: the dropout"), ("trunk/", "the trunk's features (before the head)"),
    ("decoder/", "loop: inside the decoder"), ("Softmax", "extra=entropy_*: the entropy bonus' softmax"),
    ("mul", "extra=entropy_*: the entropy term scaled by its coefficient"),
    ("truediv", "loop=greedy_*: the decoder's teacher-forced loss"), ("strided_slice", "head=nms: the score logits the loss reads"),
    ("head/", "the head's own intermediate tensors"))


def _culprits(row):
    """What made a wrong answer wrong, one label per extra output (by its scope) and per missing group."""
    want, got = set(row["right_outputs"]), set(row.get("outputs", []))
    labels = set()
    for t in got - want:
        labels.add(next((why for prefix, why in CULPRITS if t.startswith(prefix)), "other: " + _shape(t)))
    missing = want - got
    if missing:
        loop = next(p for p in row["combo"].split(",") if p.startswith("loop="))
        decoder = {t for t in want if t.startswith("decoder/")}
        if missing - decoder:
            labels.add("head outputs missing" + (" (an inference loop was chosen instead: %s)" % loop
                                                  if decoder and not decoder & missing else ""))
        if missing & decoder:
            labels.add("loop output missing (%s)" % loop)
    if row.get("inputs") is not None and row["inputs"] != row["right_inputs"]:
        labels.add("inputs differ (labels fed in: the outputs reach a loss)")
    return sorted(labels)


def _causes(rows):
    print("\nwhat makes answers wrong (a wrong answer counts under each of its causes):")
    for half in G.HALVES:
        wrong = [r for r in rows if r["half"] == half and r["verdict"] == "wrong"]
        counts = collections.Counter(c for r in wrong for c in _culprits(r))
        print("  %s (%d wrong):" % (half, len(wrong)))
        for cause, n in counts.most_common():
            print("    %4d  %s" % (n, cause))


def single_part_sweep(half):
    """The half's baseline (every kind's first variant in that half) and the baseline with one
    part changed, for every other variant of the half: which single part breaks a graph."""
    parity = G.HALVES.index(half)
    first = {k: next(i for i in range(len(v)) if i % 2 == parity) for k, v in G.KINDS.items()}
    out = [G.Combo(tuple((k, first[k]) for k in G.ORDER))]
    seen = {out[0].name}
    for kind, variants in G.KINDS.items():
        for i in range(len(variants)):
            if i % 2 != parity or i == first[kind]:
                continue
            c = G.Combo(tuple((k, i if k == kind else first[k]) for k in G.ORDER))
            if c.name not in seen:
                seen.add(c.name)
                out.append(c)
    return out


def _sweep_report(rows):
    print("\nsingle-part sweep: each half's baseline, then one part changed (minimal examples):")
    for r in rows:
        base = r["combo"] if r is rows[0] or r["half"] != rows[rows.index(r) - 1]["half"] else None
        print("  %-8s %-14s %s" % (r["half"], r["verdict"], "BASELINE " + r["combo"] if base else
                                   ",".join(p for p in r["combo"].split(",") if p not in _baseline(rows, r["half"]))))
        if r["verdict"] != "right":
            print("  %23s %s" % ("", r["detail"][:260]))


def _baseline(rows, half):
    return set(next(r for r in rows if r["half"] == half)["combo"].split(","))


def _shape(tensor):
    """A tensor name without its numbering, for grouping (head/BiasAdd_1:0 -> head/BiasAdd)."""
    import re

    name = tensor.rsplit(":", 1)[0]
    return re.sub(r"_\d+(?=/|$)", "", name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-half", type=int, default=500)
    parser.add_argument("--seed", type=int, default=33)
    parser.add_argument("--json", default=os.path.join(HERE, "..", "build", "generator-bench.json"))
    parser.add_argument("--report", metavar="JSON", help="only print the tables of an earlier run's rows "
                        "(this script's --json or build/generator-summary.json)")
    args = parser.parse_args(argv)
    if args.report:
        with open(args.report) as fh:
            rows = json.load(fh)["rows"]
        print(G.format_table(G.summarise(rows)))
        for half in G.HALVES:
            _breakdown(rows, half)
        _causes(rows)
        _patterns(rows)
        with open(args.report) as fh:
            sweep = json.load(fh).get("sweep")
        if sweep:
            _sweep_report(sweep)
        return

    data = tempfile.mkdtemp(prefix="tffreeze-generator-")
    srv = start_server(data, ["--workers", "2"])
    root = tempfile.mkdtemp(prefix="tffreeze-generator-graphs-")
    started = time.monotonic()
    rows, sweep = [], []
    try:
        with FreezeClient(srv.target, timeout=300) as client:
            for half in G.HALVES:
                sweep += G.run(single_part_sweep(half), client, root, threads=2)
            for half in G.HALVES:
                def progress(i, n, half=half):
                    if i % 50 == 0:
                        print("  %s: %d/%d built (%.0f s)" % (half, i, n, time.monotonic() - started), flush=True)
                rows += G.run(G.sample(half, args.per_half, args.seed), client, root, threads=2, progress=progress)
    finally:
        stop_server(srv)
        for folder in (data, root):  # the server's store and the built graphs: hundreds of MB
            shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.monotonic() - started
    table = G.summarise(rows)
    print("\ngenerated training graphs: %d combinations per half, seed %d, %.0f s (build %.0f s, freeze %.0f s "
          "summed over combinations)" % (args.per_half, args.seed, elapsed, sum(r.get("build_s", 0) for r in rows),
                                         sum(r.get("freeze_s", 0) for r in rows)))
    print(G.format_table(table))
    broken = [r for r in rows if r["verdict"] == "build_error"]
    if broken:
        print("%d combinations failed to build (generator bugs), e.g. %s\n%s"
              % (len(broken), broken[0]["combo"], broken[0]["detail"]))
    crashes = collections.Counter(r["reason"] for r in rows if r["verdict"] == "crash")
    if crashes:
        print("crashes by reason: %s" % dict(crashes))
    for half in G.HALVES:
        _breakdown(rows, half)
    _causes(rows)
    _patterns(rows)
    _sweep_report(sweep)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"per_half": args.per_half, "seed": args.seed, "seconds": round(elapsed, 1), "table": table,
                   "rows": rows, "sweep": sweep}, fh, indent=1)
    print("\nrows: %s" % os.path.abspath(args.json))


if __name__ == "__main__":
    main()
