"""Benchmark: the three clients side by side — `tffreeze` (Python), `tffreeze-cs` (C#, gRPC-Web)
and `tffreeze-cpp` (C++) — on the same checkpoint and server, against TensorFlow's own
freeze_graph (the anchor) measured in this run, reported as ratios.

Per client:
  first      a checkpoint the server has never seen, the client's caches empty: hash,
             upload, freeze, and the graph built from the local files (recipe) or downloaded;
  unchanged  the same freeze again, same output path (what a build system does): the digest
             cache hashes nothing, the server answers from its result cache, the output
             already holds the graph;
  new-out    the same freeze to a new output path (the graph must be written again).

usage: python bench/clients_freeze.py [--mib 256] [--repeat 5]   (make bench-clients)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

from freeze_vs_anchor import median_of, timed  # noqa: E402

BIN = os.path.dirname(sys.executable)
CLIENTS = {
    "python": [os.path.join(BIN, "tffreeze")],
    "csharp": [os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")],
    "cpp": [os.path.join(ROOT, "client_cpp", "bin", "tffreeze-cpp")],
}


def _command(client: str, server, ckpt: str, out: str):
    address = server.web_url if client == "csharp" else server.target
    return CLIENTS[client] + ["freeze", ckpt, "-o", out, "--server", address, "--quiet"]


def _server(data_dir: str):
    from conftest import start_server

    srv = start_server(data_dir, ["--web-port", "0"])
    srv.web_url = next(re.search(r"gRPC-Web on (http://\S+?)\)", line).group(1)
                       for line in srv.log if "gRPC-Web on" in line)
    return srv


def bench(mib: int, repeat: int, work: str) -> dict:
    from conftest import stop_server

    warm = os.path.join(work, "warm")
    subprocess.run([sys.executable, os.path.join(HERE, "freeze_vs_anchor.py"), "--make", warm, "0"], check=True)
    rows = {}
    for client in CLIENTS:
        if not os.path.exists(CLIENTS[client][0]):
            print("  %s: not built (make csharp cpp); skipped" % client)
            continue
        first = []
        for i in range(repeat):
            # A fresh server store and fresh client caches make every byte new to both sides.
            ckpt = os.path.join(work, "ckpt")
            if not os.path.isdir(ckpt):
                subprocess.run([sys.executable, os.path.join(HERE, "freeze_vs_anchor.py"), "--make", ckpt, str(mib)],
                               check=True)
            server = _server(os.path.join(work, "data-%s-%d" % (client, i)))
            env = dict(os.environ, TFFREEZE_CACHE_DIR=tempfile.mkdtemp(dir=work, prefix="cache-"))
            out = os.path.join(work, "%s-%d.pb" % (client, i))
            try:
                timed(_command(client, server, warm, out), env)  # the worker warm, the client's start paid once
                os.unlink(out)
                first.append(timed(_command(client, server, ckpt, out), env))
                unchanged = [timed(_command(client, server, ckpt, out), env) for _ in range(repeat)] if i == 0 else None
                new_out = ([timed(_command(client, server, ckpt, out + ".%d" % k), env) for k in range(repeat)]
                           if i == 0 else None)
            finally:
                stop_server(server)
                shutil.rmtree(server.data_dir, ignore_errors=True)
                shutil.rmtree(env["TFFREEZE_CACHE_DIR"], ignore_errors=True)
                for name in os.listdir(work):
                    if name.startswith("%s-%d.pb" % (client, i)):
                        os.unlink(os.path.join(work, name))
            if unchanged is not None:
                rows.setdefault(client, {})["unchanged"] = median_of(unchanged)
                rows[client]["new-out"] = median_of(new_out)
        rows.setdefault(client, {})["first"] = median_of(first)
        print("  %s: first %.3f s, unchanged %.3f s, new-out %.3f s" % (
            client, rows[client]["first"][0], rows[client]["unchanged"][0], rows[client]["new-out"][0]), flush=True)
    ckpt = os.path.join(work, "ckpt")
    prefix = os.path.join(ckpt, "model.ckpt-1")
    anchor = [sys.executable, "-m", "tensorflow.python.tools.freeze_graph", "--input_meta_graph", prefix + ".meta",
              "--input_binary=true", "--input_checkpoint", prefix, "--output_node_names", "y",
              "--output_graph", os.path.join(work, "anchor.pb")]
    rows["freeze_graph"] = median_of([timed(anchor, dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
                                      for _ in range(max(1, repeat // 2))])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=256, help="size of the checkpoint's big variable")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tffreeze-bench-clients-")
    try:
        print("checkpoint with a %d MiB variable, %d runs each (medians)" % (args.mib, args.repeat), flush=True)
        rows = bench(args.mib, args.repeat, work)
        anchor = rows.pop("freeze_graph")[0]
        print("\n  %-8s %-10s %8s %10s %12s" % ("client", "case", "wall s", "peak MiB", "anchor/this"))
        for client, cases in rows.items():
            for case in ("first", "unchanged", "new-out"):
                t, m = cases[case]
                print("  %-8s %-10s %8.3f %10.0f %11.1fx" % (client, case, t, m, anchor / t))
        print("  %-8s %-10s %8.3f  (TensorFlow's freeze_graph, the anchor)" % ("anchor", "", anchor))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
