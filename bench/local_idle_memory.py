"""The idle local server's memory: what `tffreeze local-server` holds between calls.

Starts a local server of its own (a temporary $TFFREEZE_CACHE_DIR, so it never touches
yours), freezes a small checkpoint through it (the worker has imported TensorFlow and run a
task), waits idle, and reads /proc for the server process and every process below it (the
warm TensorFlow worker runs under bubblewrap, so it is a grandchild):

- RSS: resident memory per process, summed (counts pages the processes share once each);
- PSS: proportional set size (smaps_rollup), summed: shared pages split between the
  processes sharing them (other TensorFlow processes on the machine lower it);
  split into anonymous memory (the processes' heaps) and mapped files (TensorFlow's
  shared libraries: page cache, shared with any other TensorFlow process);
- USS: pages private to one process, summed: what stopping the server frees at least.

usage: python bench/local_idle_memory.py [--idle 10] [--workers 1]
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
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
TFFREEZE = os.path.join(os.path.dirname(sys.executable), "tffreeze")


def _kib(pid: int, path: str, key: str) -> int:
    try:
        with open("/proc/%d/%s" % (pid, path)) as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _name(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return "?"
    text = " ".join(argv)
    if argv and os.path.basename(argv[0]) == "bwrap":
        return "bwrap"
    if "tffreeze_server.workers" in text:
        return "worker"
    if "tffreeze_server.cli" in text:
        return "server"
    return os.path.basename(argv[0]) if argv else "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--idle", type=float, default=10.0, help="seconds to wait after the freeze (default: %(default)s)")
    ap.add_argument("--workers", default="1", help="the local server's workers (default: %(default)s, its default)")
    args = ap.parse_args()

    import models  # the tests' checkpoint builders (TensorFlow in this process, not in the server)
    import proctree

    root = tempfile.mkdtemp(prefix="tffreeze-idle-")
    env = dict(os.environ, TFFREEZE_CACHE_DIR=os.path.join(root, "cache"))
    for name in ("TFFREEZE_SERVER", "TFFREEZE_WEB_SERVER"):
        env.pop(name, None)
    try:
        ckpt = models.dense(os.path.join(root, "ckpt"), True)
        started = time.monotonic()
        subprocess.run([TFFREEZE, "local-server", "start", "--workers", args.workers], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        start_s = time.monotonic() - started
        subprocess.run([TFFREEZE, "freeze", ckpt.directory, "-o", os.path.join(root, "m.pb")], env=env, check=True)
        time.sleep(args.idle)
        from tffreeze_api import localserver

        info = localserver.read_info(os.path.join(env["TFFREEZE_CACHE_DIR"], "local"))
        server = int(info["pid"])
        rows = []
        for pid in [server] + sorted(proctree.descendants(server)):
            rows.append((pid, _name(pid), _kib(pid, "status", "VmRSS"), _kib(pid, "smaps_rollup", "Pss"),
                         _kib(pid, "smaps_rollup", "Private_Clean") + _kib(pid, "smaps_rollup", "Private_Dirty"),
                         _kib(pid, "smaps_rollup", "Pss_Anon"), _kib(pid, "smaps_rollup", "Pss_File"),
                         _kib(pid, "status", "RssFile")))
        print("local server idle %.0f s after a freeze (start took %.1f s), %s worker(s):" % (args.idle, start_s,
                                                                                         args.workers))
        for pid, name, rss, pss, uss, anon, files, _ in rows:
            print("  %-7d %-8s RSS %7.1f MiB  PSS %7.1f MiB (anonymous %6.1f, files %6.1f)  USS %7.1f MiB"
                  % (pid, name, rss / 1024.0, pss / 1024.0, anon / 1024.0, files / 1024.0, uss / 1024.0))
        rss, pss, uss, anon, files = (sum(r[i] for r in rows) / 1024.0 for i in (2, 3, 4, 5, 6))
        libraries = max(r[7] for r in rows) / 1024.0
        print("total: RSS %.0f MiB (pages shared between them counted in each); PSS %.0f MiB = %.0f MiB anonymous "
              "(heap: TensorFlow's import) + %.0f MiB of mapped files (shared libraries, shared with any other "
              "TensorFlow process; %.0f MiB of them resident in the worker); USS %.0f MiB"
              % (rss, pss, anon, files, libraries, uss))
    finally:
        subprocess.run([TFFREEZE, "local-server", "stop"], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
