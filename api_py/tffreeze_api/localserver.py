"""Where the per-user local server lives, shared by the server (``tffreeze serve --local``)
and the clients that start it on demand.

One folder per user, mode 0700: ``$TFFREEZE_CACHE_DIR/local`` when that variable names a
folder, else ``$XDG_CACHE_HOME/tffreeze/local`` (``~/.cache/tffreeze/local``). It holds

- ``server.info``: written by the server once it accepts calls, removed when it stops;
  ``key value`` lines (``pid``, ``version``, ``grpc`` = ``unix:SOCKET``, ``web`` =
  ``http://127.0.0.1:PORT`` for gRPC-Web clients, ``token-file``). The C# and C++ clients
  read it too, so it stays this simple;
- ``token``: the bearer token every call must carry (0600, made by the server): the
  gRPC-Web port is loopback TCP, which other users could reach;
- ``server.log`` (the previous one as ``server.log.1``), ``data/`` (the blob store),
  ``start.lock`` (held while a client starts the server).

The gRPC socket is ``grpc-PID.sock`` in that folder, or, when that path is too long for a
Unix socket address, ``/tmp/tffreeze-UID/HASH-PID.sock`` in a 0700 folder of the user's own.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Dict, Optional

INFO = "server.info"
TOKEN = "token"
LOG = "server.log"
LOCK = "start.lock"
DATA = "data"
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes with its terminator; leave room


def local_dir() -> str:
    value = os.environ.get("TFFREEZE_CACHE_DIR", "").strip()
    if value and value.lower() not in ("off", "0", "none"):
        return os.path.join(os.path.abspath(value), "local")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "tffreeze", "local")


def private_folder(path: str) -> str:
    """Create ``path`` (mode 0700) or check that an existing one is this user's and closed to
    others; OSError naming the problem otherwise."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise OSError("%s is not a folder of this user's: the local server needs one only you can reach" % path)
    if st.st_mode & 0o077:
        os.chmod(path, 0o700)
    return path


def socket_path(folder: str, pid: int) -> str:
    """The socket of the server with process id ``pid`` (one per server: a server stopping
    removes its own socket, never the next one's)."""
    path = os.path.join(folder, "grpc-%d.sock" % pid)
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    short = private_folder(os.path.join("/tmp", "tffreeze-%d" % os.getuid()))
    return os.path.join(short, "%s-%d.sock" % (hashlib.sha256(folder.encode()).hexdigest()[:16], pid))


def read_info(folder: str) -> Optional[Dict[str, str]]:
    try:
        with open(os.path.join(folder, INFO), encoding="utf-8") as fh:
            pairs = (line.rstrip("\n").partition(" ") for line in fh)
            info = {k: v for k, _, v in pairs if k}
    except (OSError, UnicodeDecodeError):
        return None
    return info if {"pid", "version", "grpc", "token-file"} <= set(info) and info["pid"].isdigit() else None


def write_info(folder: str, info: Dict[str, str]) -> None:
    tmp = os.path.join(folder, INFO + ".%d.part" % os.getpid())
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
        fh.write("".join("%s %s\n" % kv for kv in info.items()))
    os.replace(tmp, os.path.join(folder, INFO))


def alive(pid: int) -> bool:
    """Whether ``pid`` runs and is a tffreeze server (not a stranger that reused the number)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return b"tffreeze" in fh.read()
    except OSError:
        return False


def read_token(path: str) -> str:
    with open(path, encoding="ascii") as fh:
        return fh.read().strip()


__all__ = ["INFO", "TOKEN", "LOG", "LOCK", "DATA", "local_dir", "private_folder", "socket_path", "read_info",
           "write_info", "alive", "read_token"]
