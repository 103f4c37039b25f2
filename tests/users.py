"""Ordinary users (not root) for the tests: tffreeze must work for the people who run it,
and they are not root. Our machines and CI are.

``ordinary()`` gives a user to run commands as:

- run as root (CI), a user made for the tests (``useradd``), reached through ``User.wrap``:
  a private mount namespace in which the project's folder and the Python installation its
  venv was made from are reachable (they may lie under a home closed to others, such as
  ``/root/.pyenv``; a real user would have a venv of their own), then the user's own ids
  and groups (``setpriv``) and a fresh environment, as after a login;
- run as an ordinary user already (a developer's machine), that user: ``wrap`` adds nothing.

A second user (``ordinary(SECOND)``) exists only where the tests run as root; where they
cannot make one, tests that need it skip, unless ``TFFREEZE_REQUIRE_NONROOT=1`` (CI) says
they must run.
"""

from __future__ import annotations

import atexit
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST = "tffreeze-user"
SECOND = "tffreeze-other"
CONTAINER = ("tffreeze-10001", 10001)  # the image's documented user (Dockerfile: USER 10001)
_HOLD = "/run/tffreeze-test-hold"  # an empty folder: a tmpfs is mounted on it in the private namespace


def require_or_skip(why: str) -> None:
    if os.environ.get("TFFREEZE_REQUIRE_NONROOT") == "1":
        pytest.fail(why + " -- TFFREEZE_REQUIRE_NONROOT=1 (CI) forbids skipping")
    pytest.skip(why)


def _closed_tops(path: str) -> Optional[str]:
    """The highest folder above ``path`` that others may not enter (no o+x), if any."""
    parts = os.path.realpath(path).split("/")[1:]
    for i in range(1, len(parts) + 1):
        folder = "/" + "/".join(parts[:i])
        if os.path.isdir(folder) and not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def _exposed() -> List[str]:
    """Folders the user must reach: the project (its venv) and the venv's base Python."""
    return sorted({os.path.realpath(ROOT), os.path.realpath(sys.base_prefix)})


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: str
    switch: bool  # True: root switches to it; False: it is the user running the tests

    def env(self, **extra: str) -> Dict[str, str]:
        """A fresh environment as after a login, plus ``extra`` (the venv's bin on PATH)."""
        if not self.switch:  # the user running the tests: a throwaway HOME, never their real ~/.cache
            env = {k: v for k, v in os.environ.items() if not k.startswith("TFFREEZE_") and k != "XDG_CACHE_HOME"}
            env["HOME"] = self.home
        else:
            env = {"HOME": self.home, "USER": self.name, "LOGNAME": self.name, "LANG": "C.UTF-8",
                   "PATH": "/usr/local/bin:/usr/bin:/bin"}
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "/usr/bin:/bin")
        env.update(extra)
        return env

    def wrap(self) -> List[str]:
        """The command prefix that runs what follows as this user (empty for the current user)."""
        if not self.switch:
            return []
        script = ["set -e", "umask 022", "mount --make-rprivate /", "mkdir -p %s" % _HOLD,
                  "mount -t tmpfs -o mode=700 tmpfs %s" % _HOLD]
        moves, tops = [], []
        for i, path in enumerate(_exposed()):
            top = _closed_tops(path)
            if top is None:
                continue
            script += ["mkdir %s/%d" % (_HOLD, i), "mount --bind '%s' %s/%d" % (path, _HOLD, i)]
            tops.append(top)
            moves.append((i, path))
        for top in sorted(set(tops)):
            script.append("mount -t tmpfs -o mode=755 tmpfs '%s'" % top)
        for i, path in moves:
            script += ["mkdir -p '%s'" % path, "mount --move %s/%d '%s'" % (_HOLD, i, path)]
        script += ["umount %s" % _HOLD,
                   'exec setpriv --reuid=%d --regid=%d --init-groups --inh-caps=-all -- "$@"' % (self.uid, self.gid)]
        return ["unshare", "--mount", "--", "sh", "-c", "\n".join(script), "sh"]

    def run(self, argv, env=None, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        return subprocess.run(self.wrap() + list(argv), env=self.env() if env is None else env, **kw)

    def folder(self, prefix: str = "tffreeze-user-") -> str:
        """A new folder of this user's (mode 0755) that root can fill too."""
        path = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        os.chmod(path, 0o755)
        if self.switch:
            os.chown(path, self.uid, self.gid)
        return path

    def give(self, path: str) -> str:
        """Hand ``path`` (a file or folder tree made by the tests) to this user."""
        if self.switch:
            for dirpath, dirnames, filenames in os.walk(path):
                os.chown(dirpath, self.uid, self.gid)
                for name in filenames:
                    os.chown(os.path.join(dirpath, name), self.uid, self.gid, follow_symlinks=False)
        return path


def _throwaway_home() -> str:
    """A fresh HOME for the user running the tests, removed when the run ends: a test that
    starts "the user's" local server or clears "their" ~/.cache/tffreeze must not reach the
    real one (a running local server of theirs would be orphaned)."""
    home = tempfile.mkdtemp(prefix="tffreeze-test-home-")
    atexit.register(shutil.rmtree, home, True)
    return home


def ordinary(name: str = FIRST, uid: Optional[int] = None) -> User:
    """The ordinary user ``name`` (made when the tests run as root), or the current user."""
    if os.geteuid() != 0:
        if name != FIRST:
            require_or_skip("a second user (%s) can only be made when the tests run as root" % name)
        me = pwd.getpwuid(os.getuid())
        return User(me.pw_name, me.pw_uid, me.pw_gid, _throwaway_home(), switch=False)
    for tool in ("useradd", "setpriv", "unshare"):
        if shutil.which(tool) is None:
            require_or_skip("%s (util-linux/passwd) is not installed: no ordinary user can be made" % tool)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        cmd = ["useradd", "--create-home", "--shell", "/bin/sh", "--user-group"]
        if uid is not None:
            cmd += ["--uid", str(uid)]
        made = subprocess.run(cmd + [name], capture_output=True, text=True)
        if made.returncode != 0 and "already exists" not in made.stderr:
            require_or_skip("useradd %s failed: %s" % (name, made.stderr.strip()))
        entry = pwd.getpwnam(name)
    if uid is not None and entry.pw_uid != uid:
        require_or_skip("user %s exists with uid %d, not %d" % (name, entry.pw_uid, uid))
    grp.getgrgid(entry.pw_gid)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, switch=True)


def container_user() -> User:
    """The container image's user (uid 10001), or the current user where not root."""
    name, uid = CONTAINER
    if os.geteuid() != 0:
        return ordinary()
    try:
        existing = pwd.getpwuid(uid)
        return User(existing.pw_name, uid, existing.pw_gid, existing.pw_dir, switch=True)
    except KeyError:
        return ordinary(name, uid)


__all__ = ["User", "ordinary", "container_user", "require_or_skip", "FIRST", "SECOND"]
