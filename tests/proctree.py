"""A server's process tree from /proc (workers run under bubblewrap, so they are
grandchildren): for tests and benchmarks that watch workers or their memory."""

from __future__ import annotations

import os
from typing import Dict, List


def _status(pid: int) -> Dict[str, str]:
    with open("/proc/%d/status" % pid) as fh:
        return dict(line.split(":", 1) for line in fh.read().splitlines() if ":" in line)


def descendants(root: int) -> List[int]:
    """Every live process below ``root``."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                parents[int(name)] = int(_status(int(name))["PPid"])
            except (OSError, KeyError, ValueError):
                continue
    out = []
    for pid in parents:
        p, hops = parents[pid], 0
        while p in parents and p != root and hops < 10:
            p, hops = parents[p], hops + 1
        if p == root:
            out.append(pid)
    return out


def peak_rss_mib(pid: int) -> float:
    """VmHWM of one process, in MiB (0 when it is gone)."""
    try:
        return int(_status(pid).get("VmHWM", "0 kB").split()[0]) / 1024.0
    except (OSError, ValueError):
        return 0.0


def workers(server_pid: int) -> List[int]:
    """The server's TensorFlow worker processes (python -m tffreeze_server.workers)."""
    out = []
    for pid in descendants(server_pid):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if b"tffreeze_server.workers" in argv and b"python" in os.path.basename(argv[0]):
            out.append(pid)
    return out


def split_workers(server_pid: int):
    """(warm workers, task processes): each task runs in processes forked from its warm
    worker (same command line), below it."""
    found = set(workers(server_pid))
    parents = {}
    for pid in found:
        try:
            parents[pid] = int(_status(pid)["PPid"])
        except (OSError, KeyError, ValueError):
            continue
    tasks = {pid for pid, parent in parents.items() if parent in found}
    return sorted(found - tasks), sorted(tasks)


__all__ = ["descendants", "peak_rss_mib", "workers", "split_workers"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds one process has used (0 when it is gone)."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0
