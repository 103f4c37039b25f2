"""The per-task sandbox's cost: the same freezes on today's server and on the server
before per-task sandboxes (BASELINE, tasks run in a warm, shared worker sandbox and
outputs were renamed into the store), both started here from this machine's venv,
in one run, as ratios after/before.

Each call is a real freeze (--no-result-cache; blobs already uploaded), sandboxed
(bwrap), one worker: a small model (the 3-variable dense net: what it costs to fork
and wall in a task and to copy its output in) and a 256 MiB checkpoint (the output
copied and re-hashed into the store instead of renamed). The target: a small freeze
within 1.5x of the baseline.

Small freezes are timed as a library call (FreezeClient.freeze: the server's round
trip) and as the `tffreeze freeze` command a user or build step runs.

usage: python bench/task_sandbox.py [--small 20] [--large 3] [--mib 256]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, HERE)

BASELINE = "43bc510"  # the last commit before per-task sandboxes (a shared, long-lived worker sandbox)


def baseline_tree(work: str) -> str:
    """The baseline's files (git archive) with its Python stubs generated; raises when
    the commit is not in this clone (a shallow one)."""
    tree = os.path.join(work, "baseline")
    os.makedirs(tree)
    archive = subprocess.run(["git", "-C", ROOT, "archive", "--format=tar", BASELINE], capture_output=True,
                             check=True).stdout
    with tempfile.TemporaryFile() as fh:
        fh.write(archive)
        fh.seek(0)
        with tarfile.open(fileobj=fh) as tar:
            tar.extractall(tree)
    subprocess.run([os.path.join(tree, "tools", "gen_python.sh"), sys.executable], check=True)
    return tree


def start(data_dir: str, tree: str = ""):
    """A server (this tree's, or ``tree``'s packages first on the path) on a free port."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if tree:
        env["PYTHONPATH"] = os.pathsep.join(os.path.join(tree, p) for p in ("server", "api_py", "client_py"))
    proc = subprocess.Popen([sys.executable, "-m", "tffreeze_server.cli", "--port", "0", "--data-dir", data_dir,
                             "--workers", "1", "--no-result-cache", "--sandbox", "bwrap"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 180
    for line in proc.stdout:
        m = re.search(r"listening on (\S+):(\d+)", line)
        if m:
            return proc, "%s:%s" % (m.group(1), m.group(2))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise RuntimeError("the server did not start")


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def timings(target: str, directory: str, calls: int):
    """Wall seconds of ``calls`` freezes after two warm-up ones (upload, worker warm)."""
    from tffreeze import FreezeClient

    out = []
    with FreezeClient(target, timeout=600) as c:
        c.freeze(directory)
        c.freeze(directory)
        for _ in range(calls):
            os.sync()
            start_ = time.perf_counter()
            c.freeze(directory)
            out.append(time.perf_counter() - start_)
    return out


def cli_timings(target: str, directory: str, calls: int, out: str):
    """Wall seconds of ``calls`` `tffreeze freeze` commands (what a build step runs) after
    one warm-up command."""
    cli = os.path.join(os.path.dirname(sys.executable), "tffreeze")
    cmd = [cli, "freeze", directory, "--server", target, "-o", out, "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True)
    times = []
    for _ in range(calls):
        os.sync()
        start_ = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start_)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=20, help="small freezes per server (default: %(default)s)")
    ap.add_argument("--large", type=int, default=3, help="large freezes per server (default: %(default)s)")
    ap.add_argument("--mib", type=int, default=256)
    args = ap.parse_args()
    import models
    from freeze_vs_anchor import make_checkpoint

    with tempfile.TemporaryDirectory(prefix="tffreeze-taskbox-") as work:
        try:
            tree = baseline_tree(work)
        except (subprocess.CalledProcessError, OSError) as exc:
            print("task sandbox bench: the baseline %s is not available here (%s); nothing to compare"
                  % (BASELINE, exc))
            return 0
        small = models.dense(os.path.join(work, "small"), True).directory
        large = os.path.join(work, "large")
        make_checkpoint(large, args.mib)
        rows = {}
        # alternate before/after so that drift on the machine falls on both
        for label, src in (("before", tree), ("after", ""), ("before ", tree), ("after ", "")):
            proc, target = start(os.path.join(work, "data-" + label.strip() + str(len(rows))), src)
            try:
                s = timings(target, small, args.small // 2)
                c = cli_timings(target, small, args.small // 4, os.path.join(work, "out.pb"))
                l = timings(target, large, max(1, args.large // 2 + args.large % 2))
            finally:
                stop(proc)
            rows.setdefault(label.strip(), ([], [], []))
            rows[label.strip()][0].extend(s)
            rows[label.strip()][1].extend(c)
            rows[label.strip()][2].extend(l)
    print("per-task sandbox (fork + namespaces per task, output copied and re-hashed) vs %s (one shared worker "
          "sandbox), sandboxed, 1 worker, every call a real freeze:" % BASELINE)
    for i, what in enumerate(("small freeze, library call", "small freeze, `tffreeze freeze` CLI",
                              "%d MiB checkpoint, library call" % args.mib)):
        before = statistics.median(rows["before"][i])
        after = statistics.median(rows["after"][i])
        print("  %-38s before %.3f s  after %.3f s  after/before %.2fx%s"
              % (what, before, after, after / before, "  (target <= 1.5x)" if i < 2 else ""))
    print("  (the library call is the server's round trip alone; the CLI is what a user or build step runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
