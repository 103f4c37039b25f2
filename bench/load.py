"""Load benchmark: many clients freezing at once against one server, bounded.

For 8 and 32 concurrent clients, each freezing the same small checkpoint (blobs
already uploaded: the re-freeze path build systems hit) a fixed number of times,
it reports p50/p99/max latency, errors, and the server's and workers' peak RSS,
twice: with workers recycled every 50 tasks (--worker-max-tasks 50: about ten
recyclings during the run) and without recycling (the anchor, same run).
The ratio p99(recycling)/p99(anchor) shows whether recycling is visible; the
replacement warms while the old worker serves, so it should stay near 1.

usage: python bench/load.py [--clients 8,32] [--calls 12] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))


def _run(target: str, directory: str, clients: int, calls: int):
    from tffreeze import FreezeClient

    latencies, errors, lock = [], [], threading.Lock()

    def one():
        with FreezeClient(target, timeout=300) as c:
            for _ in range(calls):
                start = time.perf_counter()
                try:
                    c.freeze(directory)
                    with lock:
                        latencies.append(time.perf_counter() - start)
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append("%s: %s" % (type(exc).__name__, str(exc)[:200]))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {"clients": clients, "calls": len(latencies), "errors": len(errors), "wall_s": round(wall, 2),
            "p50_s": round(q[49], 3), "p99_s": round(q[98], 3), "max_s": round(max(latencies), 3),
            "calls_per_s": round(len(latencies) / wall, 1), "error_kinds": sorted(set(errors))[:3]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="8,32")
    ap.add_argument("--calls", type=int, default=12, help="freezes per client (default: %(default)s)")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    import models
    from conftest import start_server, stop_server
    from tffreeze import FreezeClient
    import proctree

    report = []
    with tempfile.TemporaryDirectory(prefix="tffreeze-load-") as work:
        model = models.dense(os.path.join(work, "model"), True)
        for label, max_tasks in (("anchor (no recycling)", 1_000_000), ("recycling every 50 tasks", 50)):
            srv = start_server(os.path.join(work, "data-%d" % max_tasks),
                               ["--workers", str(args.workers), "--worker-max-tasks", str(max_tasks),
                                "--no-result-cache"])  # every call a real freeze on a worker
            try:
                with FreezeClient(srv.target) as c:
                    c.freeze(model.directory)  # upload once, warm the worker
                for clients in (int(c) for c in args.clients.split(",")):
                    row = _run(srv.target, model.directory, clients, args.calls)
                    row.update(mode=label, peak_rss_mib=round(max(
                        [proctree.peak_rss_mib(srv.proc.pid)] +
                        [proctree.peak_rss_mib(p) for p in proctree.descendants(srv.proc.pid)])))
                    report.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                stop_server(srv)
    anchor = {r["clients"]: r for r in report if r["mode"].startswith("anchor")}
    for r in report:
        if not r["mode"].startswith("anchor"):
            a = anchor[r["clients"]]
            print("%2d clients: p99 %.3f s with recycling vs %.3f s without (x%.2f); p50 %.3f vs %.3f; errors %d/%d"
                  % (r["clients"], r["p99_s"], a["p99_s"], r["p99_s"] / a["p99_s"], r["p50_s"], a["p50_s"],
                     r["errors"], a["errors"]))
    return 1 if any(r["errors"] for r in report) else 0


if __name__ == "__main__":
    sys.exit(main())
