"""Fill the local server's store with large checkpoints through every client, then freeze more.

A local server of its own (a temporary $TFFREEZE_CACHE_DIR) with a store of --store bytes
($TFFREEZE_LOCAL_STORE_BYTES, as a user would set it) freezes --count checkpoints of --mb MB
each, the clients taking turns (tffreeze, tffreeze-cs over gRPC-Web with resumable uploads,
tffreeze-cpp). Each freeze adds its checkpoint and its frozen graph (about as large) to the
store, so from the second or third on the least recently used are evicted to make room.
Prints each freeze's client, exit code and time, then `local-server status`, then cleans up.

usage: python bench/local_store_fill.py [--mb 300] [--count 6] [--store 1G]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
PY = os.path.join(os.path.dirname(sys.executable), "tffreeze")
CS = os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")
CPP = os.path.join(ROOT, "client_cpp", "bin", "tffreeze-cpp")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=int, default=300, help="each checkpoint's data, in MiB (default: %(default)s)")
    ap.add_argument("--count", type=int, default=6, help="checkpoints to freeze (default: %(default)s)")
    ap.add_argument("--store", default="1G", help="the local server's store (default: %(default)s)")
    args = ap.parse_args()
    from test_local_store_first_week import big_checkpoint

    root = tempfile.mkdtemp(prefix="tffreeze-fill-")
    env = dict(os.environ, TFFREEZE_CACHE_DIR=os.path.join(root, "cache"), TFFREEZE_LOCAL_STORE_BYTES=args.store,
               TFFREEZE_COMMAND=PY)
    for name in ("TFFREEZE_SERVER", "TFFREEZE_WEB_SERVER"):
        env.pop(name, None)
    clients = [c for c in (PY, CS, CPP) if os.path.exists(c)]
    failed = 0
    try:
        for i in range(args.count):
            client = clients[i % len(clients)]
            ckpt = big_checkpoint(os.path.join(root, "c%d" % i), seed=i, megabytes=args.mb)
            started = time.monotonic()
            out = subprocess.run([client, "freeze", ckpt, "-o", os.path.join(root, "c%d.pb" % i)], env=env,
                                 capture_output=True, text=True)
            print("%d  %-13s exit %d  %5.1f s  %s" % (i + 1, os.path.basename(client), out.returncode,
                                                     time.monotonic() - started,
                                                     " ".join(out.stderr.split())[-300:] if out.returncode else ""),
                  flush=True)
            failed += out.returncode != 0
            shutil.rmtree(ckpt, ignore_errors=True)
            try:
                os.unlink(os.path.join(root, "c%d.pb" % i))
            except OSError:
                pass
        print(subprocess.run([PY, "local-server", "status"], env=env, capture_output=True, text=True).stdout)
    finally:
        print(subprocess.run([PY, "local-server", "clean"], env=env, capture_output=True, text=True).stdout)
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
