"""The shared S3 store against the local store: a freeze through a replica whose store is
an S3 bucket (moto's S3 server on loopback, so the network is the loopback's and S3's
protocol cost is what is measured) against the same freeze on a local-store server, in
one run, as ratios.

Rows, each the median of REPEAT, on servers whose workers are warm: a first freeze (fresh
store: hash, upload, freeze, download), a re-freeze of the unchanged checkpoint (a result-cache lookup), and a freeze
on a second replica of what the first received (fetches the blobs from the bucket into
its cache) — for the small model and a checkpoint with a MIB MiB variable.

usage: python bench/shared_store.py [--mib 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from conftest import start_server, stop_server
    from freeze_vs_anchor import make_checkpoint
    from s3moto import BUCKET, Moto, credentials
    from tffreeze import FreezeClient

    credentials()
    import models
    work = tempfile.mkdtemp(prefix="tffreeze-s3bench-")
    os.environ["TFFREEZE_CACHE_DIR"] = "off"  # every first freeze hashes and uploads
    moto = Moto().start()
    s3 = moto.s3()
    rows = []
    warm = models.dense(os.path.join(work, "warm"), True).directory  # other bytes: never a cache hit
    try:
        for mib in (0, args.mib):
            ckpt = os.path.join(work, "ckpt-%d" % mib)
            make_checkpoint(ckpt, mib)
            times = {"local": {"first": [], "again": []}, "s3": {"first": [], "again": [], "other replica": []}}
            for i in range(args.repeat):
                for store in ("local", "s3"):
                    prefix = "run-%d-%d" % (mib, i)
                    extra = ["--store", "s3://%s/%s" % (BUCKET, prefix), "--s3-endpoint", moto.url] if store == "s3" else []
                    if store == "s3":
                        try:
                            s3.create_bucket(Bucket=BUCKET)
                        except Exception:  # noqa: BLE001 - exists
                            pass
                    a = start_server(os.path.join(work, "%s-a-%d-%d" % (store, mib, i)), extra)
                    b = start_server(os.path.join(work, "%s-b-%d-%d" % (store, mib, i)), extra) if store == "s3" else None
                    try:
                        for srv in (a, b) if b is not None else (a,):
                            with FreezeClient(srv.target) as c:  # the workers warm (TensorFlow imported)
                                c.freeze(warm, outputs=["y"])
                        with FreezeClient(a.target) as c:
                            t = time.perf_counter()
                            c.freeze(ckpt, os.path.join(work, "out.pb"), outputs=["y"])
                            times[store]["first"].append(time.perf_counter() - t)
                            os.unlink(os.path.join(work, "out.pb"))
                            t = time.perf_counter()
                            c.freeze(ckpt, os.path.join(work, "out.pb"), outputs=["y"])
                            times[store]["again"].append(time.perf_counter() - t)
                            os.unlink(os.path.join(work, "out.pb"))
                        if b is not None:
                            with FreezeClient(b.target) as c:
                                t = time.perf_counter()
                                c.freeze(ckpt, os.path.join(work, "out.pb"), outputs=["y"], optimize=True)
                                times[store]["other replica"].append(time.perf_counter() - t)
                                os.unlink(os.path.join(work, "out.pb"))
                    finally:
                        stop_server(a)
                        if b is not None:
                            stop_server(b)
            local = {k: statistics.median(v) for k, v in times["local"].items()}
            for row, ts in times["s3"].items():
                med = statistics.median(ts)
                anchor = local.get(row, local["first"])
                rows.append((mib, row, med, anchor, anchor / med))
    finally:
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("shared S3 store (moto on loopback) vs local store, median of %d; ratio = local / s3 (1.0 = as fast)"
          % args.repeat)
    for mib, row, med, anchor, ratio in rows:
        size = "small model" if mib == 0 else "+ %d MiB" % mib
        print("  %-12s %-14s s3 %6.3f s   local %6.3f s   %5.2fx" % (size, row, med, anchor, ratio))
    print("  (other replica: a freeze, with --optimize so it is not a cache hit, on a second replica that "
          "fetches the blobs from the bucket; compared with the local first freeze)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
