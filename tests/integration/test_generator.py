"""Generality you can measure (issue 33): training graphs composed from parts with a
known answer (tests/generator.py), frozen without names through the real server and
the Python client, graded right / refused with the right candidates / refused
otherwise / wrong / crash, per half (tune and held-out, see the generator's split).

A fixed sample of each half runs here (``SAMPLE`` combinations per half, seed 33);
`make bench-real` runs the full size (bench/generated_graphs.py). The assertions are
ratchets at the numbers measured when they were set: no crash at all, no more wrong
answers and no fewer right ones than then, per half. Better numbers pass: then raise
the floors (and lower the ceilings) to the new measurement. The table prints on every
run (pytest -s) and goes to build/generator-summary.json.

Graded by a freeze, not by inspect: inspect resolves with the refusals turned off
(engine.inspect calls _resolve with refuse_ambiguous=False, refuse_unsafe=False) and
lists the inputs of the graph before binding and folding, so it answers where a freeze
says "not sure" and its inputs can differ from the freeze's."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

import generator as G
from conftest import start_server, stop_server

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SAMPLE = 40  # per half
SEED = 33
# Ratchets, measured with SAMPLE and SEED above (the README gives the full run's numbers). Of 40
# per half (latest): tune 27 right, 13 refused listing the right outputs, 0 refused without them,
# 0 wrong; held-out 38 right, 2 refused listing them, 0 refused without them, 0 wrong; no crash.
# (Earlier the same day: held-out 29 right, 3 wrong; before the resolver's rules of 2026-12-07: 1 and
# 6 right, 29 wrong each.)
MAX_WRONG = {"tune": 0, "heldout": 0}
MIN_RIGHT = {"tune": 27, "heldout": 38}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every sampled combination built, frozen and graded (both halves, one server with two workers)."""
    from tffreeze import FreezeClient

    srv = start_server(str(tmp_path_factory.mktemp("generator-server")), ["--workers", "2"])
    root = str(tmp_path_factory.mktemp("generator-graphs"))
    started = time.monotonic()
    rows = []
    try:
        with FreezeClient(srv.target, timeout=300) as client:
            for half in G.HALVES:
                rows += G.run(G.sample(half, SAMPLE, SEED), client, root, threads=2)
    finally:
        code = stop_server(srv)
    elapsed = time.monotonic() - started
    table = G.summarise(rows)
    print("\ngenerator (issue 33): %d combinations per half, seed %d, %.0f s\n%s"
          % (SAMPLE, SEED, elapsed, G.format_table(table)), file=sys.stderr)
    os.makedirs(os.path.join(REPO, "build"), exist_ok=True)
    with open(os.path.join(REPO, "build", "generator-summary.json"), "w") as fh:
        json.dump({"sample_per_half": SAMPLE, "seed": SEED, "seconds": round(elapsed, 1), "table": table,
                   "rows": rows}, fh, indent=1)
    assert code == 0, "server did not shut down cleanly"
    return rows, table


def test_every_combination_builds(graded):
    rows, _ = graded
    broken = [(r["combo"], r["detail"]) for r in rows if r["verdict"] == "build_error"]
    assert not broken, broken[:3]


def test_no_crash_no_safety_net(graded):
    """No GRAPH_UNSUPPORTED, INTERNAL or other unexpected error on any combination."""
    rows, _ = graded
    crashes = [(r["combo"], r["reason"], r.get("message", "")[:300]) for r in rows if r["verdict"] == "crash"]
    assert not crashes, crashes[:5]


@pytest.mark.parametrize("half", G.HALVES)
def test_ratchet(graded, half):
    """No worse than when measured: wrong answers (exit 0, other names) at most, right answers at least."""
    rows, table = graded
    t = table[half]
    wrong = [(r["combo"], r["detail"]) for r in rows if r["half"] == half and r["verdict"] == "wrong"]
    assert t["wrong"] <= MAX_WRONG[half], "more wrong answers than measured (%d > %d); new ones among: %s" % (
        t["wrong"], MAX_WRONG[half], wrong[:5])
    assert t["right"] >= MIN_RIGHT[half], "fewer right answers than measured (%d < %d)" % (t["right"], MIN_RIGHT[half])
