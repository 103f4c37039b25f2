"""One sandbox per task, entered by a fresh child of the warm worker.

The worker (``workers``) imports TensorFlow once and never runs a task itself:
for each task it forks a child, and the child, before any of the task's code
or data is touched, walls itself in (``enter``):

1. a new user and mount namespace (the only one with privileges over the
   mounts below): a fresh private ``/tmp`` (tmpfs), the task's staged inputs
   bound read-only at ``/tmp/in`` and its own empty output folder at
   ``/tmp/out``; the folder holding every task's files is covered by an empty
   read-only tmpfs, ``/``, ``/dev`` and the rest read-only, ``/dev/shm`` and
   ``/dev/pts`` covered;
2. a second, nested user namespace with new mount, PID, IPC and network
   namespaces: the mounts above are now locked (a less privileged namespace
   cannot unmount them to see what they cover), the task is PID 1 of its own
   PID namespace (it sees and can signal no other process; when it exits, the
   kernel kills whatever it started before its parent learns of the exit), and
   it has no System V IPC or abstract sockets in common with other tasks;
3. non-dumpable (no other process of the same user can read its memory or
   descriptors; set only once the namespaces' maps are written, which an ordinary
   user's non-dumpable process may not do), a data-size limit (``RLIMIT_DATA``) of the warm worker's size
   plus the task's memory budget, and no descriptors but its task socket.

Without a sandbox (``--sandbox none``) only the fork and the limit apply.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import resource
import stat
from typing import Optional

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
PR_SET_DUMPABLE = 4

IN_DIR = "/tmp/in"
OUT_DIR = "/tmp/out"

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


class BoxError(OSError):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise BoxError(err, "%s: %s" % (what, os.strerror(err)))


def _b(path: Optional[str]) -> Optional[bytes]:
    return None if path is None else os.fsencode(path)


def mount(source: Optional[str], target: str, fstype: Optional[str], flags: int, data: Optional[str] = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), "mount %s" % target)


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), "unshare")


PR_SET_CHILD_SUBREAPER = 36


def set_child_subreaper() -> None:
    """Orphaned descendants become this process's children (it can wait for them)."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def set_dumpable(on: bool) -> None:
    _check(_libc.prctl(PR_SET_DUMPABLE, 1 if on else 0, 0, 0, 0), "prctl(PR_SET_DUMPABLE)")


def _map_self(uid: int, gid: int) -> None:
    """Map this process's user and group (as the parent namespace sees them) to themselves."""
    with open("/proc/self/setgroups", "w") as fh:
        fh.write("deny")
    with open("/proc/self/uid_map", "w") as fh:
        fh.write("%d %d 1" % (uid, uid))
    with open("/proc/self/gid_map", "w") as fh:
        fh.write("%d %d 1" % (gid, gid))


def _readonly(path: str) -> None:
    """Remount a mount point read-only (its other flags kept: locked flags may not be cleared)."""
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for opt, bit in (("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
        if opt in _mount_options(path):
            flags |= bit
    mount(None, path, None, flags)


def _mount_options(path: str) -> set:
    best = set()
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            parts = line.split()
            if parts[4] == path:
                best = set(parts[5].split(","))
    return best


def _mount_points() -> list:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4].replace("\\040", " ") for line in fh]


def enter(tasks_root: str, task_dir: str) -> None:
    """Steps 1 and 2 of the module docstring; call in a single-threaded child.
    ``task_dir`` holds ``in/`` (staged inputs) and ``out/`` (empty), below ``tasks_root``."""
    uid, gid = os.getuid(), os.getgid()
    # The warm worker is non-dumpable, and so is this fork of it. A non-dumpable process's
    # /proc/self files belong to root, so an ordinary user (not root) could not write the
    # new namespace's maps (EACCES). Dumpable while the two namespaces are made and mapped,
    # non-dumpable again before anything else: nothing of a task exists yet, and no task can
    # see or trace this process (tasks live in PID and user namespaces of their own below it).
    set_dumpable(True)
    unshare(CLONE_NEWUSER | CLONE_NEWNS)
    _map_self(uid, gid)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # the task's folders, held by descriptor: the mounts below may cover their paths
    # (a data directory under /tmp, say)
    held = [os.open(os.path.join(task_dir, sub), os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW) for sub in ("in", "out")]
    # what the worker's sandbox bound below /tmp (a Python installation or packages under
    # /tmp, say) stays visible, read-only, above the task's own /tmp; the tasks folder does not
    inside = lambda p, root: p == root or p.startswith(root + "/")  # noqa: E731
    below = [p for p in _mount_points() if p.startswith("/tmp/") and not inside(p, tasks_root)]
    tops = [p for p in below if not any(p != q and inside(p, q) for q in below)]
    kept = [(p, os.open(p, os.O_PATH | os.O_NOFOLLOW), inside(tasks_root, p)) for p in tops]
    try:
        mount("tmpfs", tasks_root, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=500")
        mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=700")
        os.mkdir(IN_DIR, 0o700)
        os.mkdir(OUT_DIR, 0o700)
        mount("/proc/self/fd/%d" % held[0], IN_DIR, None, MS_BIND | MS_REC)
        _readonly(IN_DIR)
        mount("/proc/self/fd/%d" % held[1], OUT_DIR, None, MS_BIND)
        for path, fd, holds_tasks in kept:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.makedirs(path, exist_ok=True)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").close()
            # recursively, unless the tasks folder is below it (then only that mount)
            mount("/proc/self/fd/%d" % fd, path, None, MS_BIND | (0 if holds_tasks else MS_REC))
            _readonly(path)
    finally:
        for fd in held + [k[1] for k in kept]:
            os.close(fd)
    for path in ("/dev/shm", "/dev/pts", "/dev/mqueue"):
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "size=4k,mode=500")
    # everything else that was writable becomes read-only: /, /dev and whatever the
    # parent sandbox bound (but the fresh /tmp and the task's output folder)
    keep = {"/tmp", OUT_DIR, "/proc"}
    for point in _mount_points():
        if point not in keep and not point.startswith("/proc/") and "rw" in _mount_options(point):
            try:
                _readonly(point)
            except BoxError as exc:
                if exc.errno not in (errno.EPERM, errno.EACCES, errno.EINVAL):
                    raise
    # step 2: lock those mounts, and a PID/IPC/network namespace of the task's own
    unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWNET)
    _map_self(uid, gid)
    set_dumpable(False)


def probe(tasks_root: str) -> int:
    """Enter a task's sandbox once, as a warm worker's fork does (the worker non-dumpable,
    the child single-threaded), in a throwaway task folder below ``tasks_root``: 0 when it
    works, else 1 with the reason on stderr. Run at the server's start inside the worker
    sandbox, so that a machine where it cannot work (user namespaces refused to this user,
    say) is told at once, not by every task failing."""
    import shutil
    import sys
    import tempfile

    task_dir = tempfile.mkdtemp(prefix="probe-", dir=tasks_root)
    try:
        for sub in ("in", "out"):
            os.mkdir(os.path.join(task_dir, sub), 0o700)
        set_dumpable(False)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                enter(tasks_root, task_dir)
                code = 0
            except BaseException as exc:  # noqa: BLE001 - reported, not raised: this is a child
                print("%s: %s" % (type(exc).__name__, exc), file=sys.stderr)
            finally:
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        return 0 if os.waitstatus_to_exitcode(status) == 0 else 1
    finally:
        shutil.rmtree(task_dir, ignore_errors=True)


def after_fork_in_pid_namespace() -> None:
    """In the task's first process of its new PID namespace: its own /proc."""
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except BoxError:
        pass  # the old /proc stays: other processes there are non-dumpable and outside this PID namespace


def limit_memory(budget_bytes: int) -> int:
    """Cap this process's data segment (heap and private writable mappings) at its
    current size plus ``budget_bytes``; returns the limit set."""
    with open("/proc/self/status") as fh:
        current = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmData:"))
    limit = current + budget_bytes
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    return limit


def close_fds_except(*keep: int) -> None:
    keep_set = sorted({0, 1, 2, *keep})
    low = 0
    for fd in keep_set + [resource.getrlimit(resource.RLIMIT_NOFILE)[0]]:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1


__all__ = ["enter", "probe", "after_fork_in_pid_namespace", "limit_memory", "close_fds_except", "set_dumpable",
           "set_child_subreaper",
           "IN_DIR", "OUT_DIR", "BoxError"]
