"""The sandbox TensorFlow workers run in: bubblewrap (``bwrap``, Debian package
``bubblewrap``) with new user, PID, network, IPC and UTS namespaces.

Inside, a worker sees the system's programs and libraries (``/usr``, ``/lib*``)
and the Python installation and packages it imports, all read-only; the folder
of task folders (``DATA/tasks``); a private ``/tmp``; no network (only its own
loopback, down), no other processes, an environment reduced to a few settings.
The blob store, the rest of the data directory and the rest of the file system
are not there at all. The worker itself never runs a task: each task's process
narrows this view further to that task's own folders (``taskbox``).
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Dict, List, Optional, Sequence

MODES = ("auto", "bwrap", "none")
_SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
_SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
_ENV_KEPT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "PYTHONHASHSEED", "OMP_NUM_THREADS",
             "TF_CPP_MIN_LOG_LEVEL", "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_USE_LEGACY_KERAS")


class SandboxUnavailable(RuntimeError):
    pass


def _python_paths() -> List[str]:
    paths = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths |= {os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)}
    exe = os.path.realpath(sys.executable)
    paths.add(os.path.dirname(exe))
    # a venv's python is a symlink: keep both the link's folder and the interpreter's
    paths.add(os.path.dirname(os.path.abspath(sys.executable)))
    # editable installs find these packages through an import hook, not sys.path
    for name in ("tffreeze_server", "tffreeze_api"):
        module = sys.modules.get(name) or __import__(name)
        paths.add(os.path.dirname(os.path.realpath(module.__file__)))
    return sorted(paths)


class Sandbox:
    """Builds the bwrap command line for a worker."""

    def __init__(self, bwrap: str, readable: Sequence[str], writable: Sequence[str]):
        self.bwrap = bwrap
        self.readable = [os.path.realpath(p) for p in readable]
        self.writable = [os.path.realpath(p) for p in writable]

    def wrap(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> List[str]:
        """The command running ``argv`` in the sandbox with only the kept names of ``env``."""
        env = os.environ if env is None else env
        cmd = [self.bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv",
               "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--setenv", "HOME", "/tmp"]
        for name in _ENV_KEPT:
            if name in env:
                cmd += ["--setenv", name, env[name]]
        for path in _SYSTEM:
            if os.path.islink(path):
                cmd += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                cmd += ["--ro-bind", path, path]
        for path in _SYSTEM_FILES:
            cmd += ["--ro-bind-try", path, path]
        cmd += ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
        for path in _python_paths():
            if path != "/tmp" and not any(path == s or path.startswith(s + "/") for s in _SYSTEM):
                cmd += ["--ro-bind", path, path]
        for path in self.readable:
            cmd += ["--ro-bind", path, path]
        for path in self.writable:
            cmd += ["--bind", path, path]
        cmd += ["--remount-ro", "/", "--chdir", "/tmp"]
        return cmd + list(argv)


def find_bwrap() -> Optional[str]:
    return shutil.which("bwrap")


def create(mode: str, readable: Sequence[str], writable: Sequence[str]) -> Optional[Sandbox]:
    """``auto``: bubblewrap when installed and working, else None; ``bwrap``: it or
    SandboxUnavailable; ``none``: None (TF2 SavedModels and verify are then refused)."""
    if mode not in MODES:
        raise ValueError("sandbox mode must be one of %s" % ", ".join(MODES))
    global last_problem
    last_problem = "--sandbox none"
    if mode == "none":
        return None
    bwrap = find_bwrap()
    if bwrap is None:
        last_problem = "bwrap (Debian package bubblewrap) is not installed"
    else:
        sandbox = Sandbox(bwrap, readable, writable)
        last_problem = _probe(sandbox)
        if last_problem is None:
            return sandbox
    if mode == "bwrap":
        raise SandboxUnavailable(last_problem)
    return None


last_problem: Optional[str] = None  # why the last ``create`` gave no sandbox (None: it gave one)


def _probe(sandbox: Sandbox) -> Optional[str]:
    """None when a sandboxed python starts and can enter a task's own sandbox below it
    (``taskbox.probe``, as this user: the nested user namespaces), else why not."""
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # as the workers get it
    tasks = [sys.executable, "-c", "import sys; from tffreeze_server import taskbox; "
             "sys.exit(taskbox.probe(sys.argv[1]))"] + sandbox.writable[:1]
    for argv, what in (([sys.executable, "-c", "import os"], "bwrap could not start a sandbox here"),
                       (tasks, "a task's sandbox cannot be entered here (as uid %d)" % os.getuid())):
        if argv is tasks and not sandbox.writable:
            break
        try:
            proc = subprocess.run(sandbox.wrap(argv, env), capture_output=True, text=True, timeout=60, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return "%s: %s" % (what, exc)
        if proc.returncode != 0:
            return "%s: %s" % (what, (proc.stderr.strip().splitlines() or ["?"])[-1][:300])
    return None


__all__ = ["Sandbox", "SandboxUnavailable", "create", "find_bwrap", "MODES"]
