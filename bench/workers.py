"""Workers: N concurrent freezes on a server with 1 worker against the same server with 2
(and with the default, what the machine holds), in one run, as a throughput ratio.

Every call is a real freeze (--no-result-cache; blobs already uploaded), of two small
models: the 3-variable dense net (the engine's work is a few milliseconds, so the server
process's per-call work dominates) and a conv + batch-norm classifier trained in the test
style (tests/models.py training_graph: control flow, switches to bind, fused batch norm).

Also prints the CPU each freeze costs the clients (this process), the server process and
the workers: with everything on one machine's cores, their sum bounds the rate.

usage: python bench/workers.py [--clients 8] [--calls 10]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)


def _cpu(server_pid, worker_pids):
    """CPU seconds so far of (this process: the clients, the server process, its workers)."""
    import proctree

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime, proctree.cpu_seconds(server_pid),
            sum(proctree.cpu_seconds(p) for p in worker_pids))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--calls", type=int, default=10, help="freezes per client (default: %(default)s)")
    args = ap.parse_args()
    import models
    import proctree
    from conftest import start_server, stop_server
    from load import _run
    from tffreeze import FreezeClient
    from tffreeze_server.settings import DEFAULT_WORKERS

    rows = []
    with tempfile.TemporaryDirectory(prefix="tffreeze-workers-") as work:
        kinds = {"dense (3 variables)": models.dense(os.path.join(work, "dense"), True).directory,
                 "conv + batch norm": models.training_graph(os.path.join(work, "cnn"), True, cf_v1=False,
                                                            fused=True).directory}
        for label, directory in kinds.items():
            rates = {}
            for workers in sorted({1, 2, DEFAULT_WORKERS}):
                srv = start_server(os.path.join(work, "data-%d-%d" % (len(rows), workers)),
                                   ["--workers", str(workers), "--no-result-cache"])
                try:
                    with FreezeClient(srv.target) as c:
                        for _ in range(workers * 2):
                            c.freeze(directory)  # upload once, every worker warm
                    kids = proctree.descendants(srv.proc.pid)
                    before = _cpu(srv.proc.pid, kids)
                    r = _run(srv.target, directory, args.clients, args.calls)
                    after = _cpu(srv.proc.pid, kids)
                    assert r["errors"] == 0, r
                    r["cpu_ms"] = [1000.0 * (a - b) / r["calls"] for a, b in zip(after, before)]
                    rates[workers] = r
                finally:
                    stop_server(srv)
            rows.append((label, rates))
    print("%d clients x %d freezes each, every one a real freeze; ratio = freezes/s over 1 worker's"
          % (args.clients, args.calls))
    for label, rates in rows:
        base = rates[1]["calls_per_s"]
        for workers, r in sorted(rates.items()):
            print("  %-20s %d worker(s)%s  %6.1f freezes/s  p50 %.3f s  p99 %.3f s  %.2fx   CPU ms per freeze: "
                  "clients %.1f, server %.1f, workers %.1f"
                  % (label, workers, " (default)" if workers == DEFAULT_WORKERS else "          ",
                     r["calls_per_s"], r["p50_s"], r["p99_s"], r["calls_per_s"] / base, *r["cpu_ms"]))
    print("On %d cores shared by clients, server and workers, N freezes/s need N x (clients + server + workers) "
          "CPU ms per second: a second worker helps until that fills the cores." % os.cpu_count())
    return 0


if __name__ == "__main__":
    sys.exit(main())
