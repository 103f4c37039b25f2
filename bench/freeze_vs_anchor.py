"""Benchmark: `tffreeze freeze` against TensorFlow's own freeze_graph (the anchor),
both measured in this run on the same checkpoints, reported as ratios.

For each checkpoint size it reports wall time and peak RSS of
  - tffreeze freeze, warm server, blobs already uploaded (the re-freeze case);
  - tffreeze freeze, warm server, first upload (fresh data directory);
  - python -m tensorflow.python.tools.freeze_graph given the output name;
and, for large checkpoints, the I/O floor: copying the data file plus fsync.

usage: python bench/freeze_vs_anchor.py [--mib 0,256,1024] [--repeat 3]
(0 MiB = the small 3-variable model; N MiB adds an N MiB variable.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
BIN = os.path.dirname(sys.executable)


def make_checkpoint(directory: str, mib: int) -> None:
    import numpy as np

    from models import tf, tf1

    os.makedirs(directory, exist_ok=True)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("w", initializer=tf.constant(np.ones((3, 2), np.float32)))
        b = tf1.get_variable("b", initializer=tf.constant(np.zeros(2, np.float32)))
        y = tf.add(tf.matmul(x, w), b)
        if mib:
            n = mib * (1 << 20) // 4  # a random initializer keeps the value out of the .meta
            big = tf1.get_variable("big", [n], initializer=tf1.random_uniform_initializer(seed=0))
            y = y + tf.reduce_mean(big)
        tf.identity(y, name="y")
        tf1.train.get_or_create_global_step()
        saver = tf1.train.Saver()
        with tf1.Session(graph=g) as s:
            s.run(tf1.global_variables_initializer())
            saver.save(s, os.path.join(directory, "model.ckpt"), global_step=1)


def timed(cmd, env=None):
    """(wall seconds, peak RSS MiB) of one command. Dirty pages of earlier runs are written
    back first (os.sync, outside the timing): otherwise the kernel's writeback of the
    previous run's files (after 30 s) lands inside whichever command runs then."""
    os.sync()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError("%s failed: %s" % (cmd[:3], proc.stderr.read().decode()[-2000:]))
    proc.stderr.close()
    return wall, usage.ru_maxrss / 1024.0


def start_server(data_dir):
    from conftest import start_server as start

    return start(data_dir)


def median_of(runs):
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def bench_size(mib: int, repeat: int, work: str) -> dict:
    import proctree
    from conftest import stop_server

    ckpt = os.path.join(work, "ckpt-%d" % mib)
    warm = os.path.join(work, "warm")
    # Checkpoints are written by a child process: this process stays small, so
    # the peak RSS a child inherits at fork is not TensorFlow's.
    for directory, size in ((ckpt, mib), (warm, 0)):
        if not os.path.isdir(directory):
            subprocess.run([sys.executable, __file__, "--make", directory, str(size)], check=True)
    prefix = os.path.join(ckpt, "model.ckpt-1")
    out = os.path.join(work, "out.pb")
    result = {"checkpoint_mib": round(sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt)) / 2**20, 2)}

    # The client's local caches (digests, received graphs): kept across the re-freeze runs,
    # fresh for every first freeze, so a first freeze hashes and downloads for real.
    cached_env = dict(os.environ, TFFREEZE_CACHE_DIR=os.path.join(work, "client-cache-%d" % mib))
    server = start_server(os.path.join(work, "data-%d" % mib))
    try:
        tff = [os.path.join(BIN, "tffreeze"), "freeze", ckpt, "-o", out, "--server", server.target, "--quiet"]
        timed(tff, cached_env)  # warm the worker and upload once
        result["tffreeze_warm_cached"] = median_of([timed(tff, cached_env) for _ in range(repeat)])
        result["tffreeze_cached_new_output"] = median_of([
            timed(tff[:4] + [os.path.join(work, "out-%d.pb" % i)] + tff[5:], cached_env) for i in range(repeat)])
        result["server_worker_peak_mib"] = max([0.0] + [proctree.peak_rss_mib(p)
                                                        for p in proctree.descendants(server.proc.pid)])
        result["server_peak_mib"] = proctree.peak_rss_mib(server.proc.pid)
    finally:
        stop_server(server)
        # Each server's store is removed once measured: freed page cache is what the next
        # command's writes reuse (on these VMs memory not touched lately is slow to back).
        shutil.rmtree(server.data_dir, ignore_errors=True)

    first = []
    for i in range(repeat):
        server = start_server(os.path.join(work, "fresh-%d-%d" % (mib, i)))
        try:
            tff = [os.path.join(BIN, "tffreeze"), "freeze", ckpt, "-o", out, "--server", server.target, "--quiet"]
            # Warm the worker on another checkpoint, so only the upload is new.
            fresh_env = dict(os.environ, TFFREEZE_CACHE_DIR=tempfile.mkdtemp(dir=work, prefix="client-cache-"))
            timed([os.path.join(BIN, "tffreeze"), "freeze", warm, "-o", out, "--server", server.target, "--quiet"],
                  fresh_env)
            if os.path.exists(out):
                os.unlink(out)
            first.append(timed(tff, fresh_env))
            print("  first freeze %d: %.3f s" % (i + 1, first[-1][0]), flush=True)
        finally:
            stop_server(server)
            shutil.rmtree(server.data_dir, ignore_errors=True)
            shutil.rmtree(fresh_env["TFFREEZE_CACHE_DIR"], ignore_errors=True)
    result["tffreeze_warm_first_upload"] = median_of(first)

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    anchor = [sys.executable, "-m", "tensorflow.python.tools.freeze_graph", "--input_meta_graph", prefix + ".meta",
              "--input_binary=true", "--input_checkpoint", prefix, "--output_node_names", "y",
              "--output_graph", out]
    result["freeze_graph"] = median_of([timed(anchor, env) for _ in range(max(1, repeat // 2))])

    if mib:
        data = [f for f in os.listdir(ckpt) if ".data-" in f][0]
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            dst = os.path.join(work, "copy.bin")
            shutil.copyfile(os.path.join(ckpt, data), dst)
            with open(dst, "rb+") as fh:
                os.fsync(fh.fileno())
            runs.append(time.perf_counter() - start)
            os.unlink(dst)
        result["copy_fsync_s"] = statistics.median(runs)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            h = hashlib.sha256()
            with open(os.path.join(ckpt, data), "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            runs.append(time.perf_counter() - start)
        result["read_sha256_s"] = statistics.median(runs)
    return result


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--make":
        make_checkpoint(sys.argv[2], int(sys.argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", default="0,256,1024", help="comma-separated extra variable sizes in MiB")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", help="also write results here")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="tffreeze-bench-")
    rows = []
    try:
        for mib in [int(m) for m in args.mib.split(",")]:
            r = bench_size(mib, args.repeat, work)
            rows.append(r)
            a_t, a_m = r["freeze_graph"]
            print("\ncheckpoint %.2f MiB" % r["checkpoint_mib"])
            print("  %-34s %8s %10s %14s" % ("", "wall s", "peak MiB", "anchor/this"))
            for key in ("tffreeze_warm_cached", "tffreeze_cached_new_output", "tffreeze_warm_first_upload",
                        "freeze_graph"):
                t, m = r[key]
                print("  %-34s %8.3f %10.0f %13.1fx" % (key, t, m, a_t / t))
            print("  %-34s %19.0f  (the server's warm TensorFlow worker, not in the rows above)"
                  % ("server worker peak MiB", r["server_worker_peak_mib"]))
            print("  %-34s %19.0f  (the server process: gRPC, blob store)" % ("server peak MiB", r["server_peak_mib"]))
            if "copy_fsync_s" in r:
                floor = r["copy_fsync_s"] + r["read_sha256_s"]
                print("  %-34s %8.3f  (read + sha256 of the data file)" % ("hash", r["read_sha256_s"]))
                print("  %-34s %8.3f  (copy + fsync of the data file)" % ("copy", r["copy_fsync_s"]))
                print("  %-34s %8.3f  (floor = hash + copy; first freeze / floor = %.1fx)"
                      % ("floor", floor, r["tffreeze_warm_first_upload"][0] / floor))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
