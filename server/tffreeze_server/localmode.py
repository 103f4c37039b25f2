"""``tffreeze serve --local``: the per-user server the clients start on demand.

It is an ordinary server (same sandbox, limits and store) that listens on a Unix socket in
a folder only its user can open, asks every call for a token kept in that folder (its
gRPC-Web port is loopback TCP, which other users could reach), and says where it listens
in ``server.info`` once it accepts calls (see ``tffreeze_api.localserver``). The folder is
checked like the clients check it (its owner and mode, the folders above it, every file in
it) before the server reads or writes anything there: a folder another user made first (a
shared $TFFREEZE_CACHE_DIR) is refused, never adopted."""

from __future__ import annotations

import os
import secrets
import sys

from tffreeze_api import localserver

from . import __version__
from .settings import ServerSettings


def prepare(settings: ServerSettings) -> None:
    """Before the server starts: the folder checked (tffreeze_api.localserver's rules; an
    UntrustedFolder, an OSError, otherwise), new files private, a token."""
    os.umask(0o077)
    folder = localserver.private_folder(settings.local_dir)
    if os.path.dirname(os.path.abspath(settings.auth_token_file)) != folder:
        raise OSError("--local: the token must be %s" % os.path.join(folder, localserver.TOKEN))
    name = os.path.basename(settings.auth_token_file)
    with localserver.Folder(folder) as held:
        try:
            os.close(held.open(name, secret=True))  # an existing token: a regular file of this user's, 0600
        except FileNotFoundError:
            tmp = name + ".%d.part" % os.getpid()
            held.unlink(tmp)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=held.fd)
            with open(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
            os.replace(tmp, name, src_dir_fd=held.fd, dst_dir_fd=held.fd)
    socket = os.path.abspath(settings.socket)
    if os.path.dirname(socket) != folder:  # a socket folder made for it (mkdtemp): this user's, 0700
        localserver.check_folder(os.path.dirname(socket), "the local server's socket folder")
    if os.path.lexists(socket):  # left by a server of the same pid that died without cleaning up
        os.unlink(socket)


def installation() -> str:
    """Where this server's code is installed (the folder holding the tffreeze_server package):
    two checkouts of one version are two installations."""
    return os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def announce(settings: ServerSettings, srv) -> None:
    """server.info: where it listens, and which installation runs with which options (the
    clients compare them with their own; C# and C++ read only the keys they know)."""
    info = {"pid": str(os.getpid()), "version": __version__, "grpc": "unix:" + settings.socket,
            "token-file": settings.auth_token_file}
    if srv.web_port is not None:
        info["web"] = "http://%s:%d" % (settings.host, srv.web_port)
    info.update({"installation": installation(), "python": sys.executable,
                 "store-bytes": str(settings.max_store_bytes), "task-memory-bytes": str(settings.task_memory_bytes),
                 "data": os.path.abspath(settings.data_dir),
                 "workers": str(settings.workers),
                 "idle-exit": "%g" % settings.idle_exit if settings.idle_exit is not None else "never"})
    localserver.write_info(settings.local_dir, info)


def withdraw(settings: ServerSettings) -> None:
    """Stop advertising (clients then start a new server) before draining."""
    try:
        info = localserver.read_info(settings.local_dir)
        if info is not None and info["pid"] == str(os.getpid()):
            with localserver.Folder(settings.local_dir) as held:
                held.unlink(localserver.INFO)
    except OSError:  # the folder is no longer this user's alone: leave it be
        pass


__all__ = ["prepare", "announce", "withdraw"]
