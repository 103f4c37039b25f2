"""``tffreeze serve --local``: the per-user server the clients start on demand.

It is an ordinary server (same sandbox, limits and store) that listens on a Unix socket in
a folder only its user can open, asks every call for a token kept in that folder (its
gRPC-Web port is loopback TCP, which other users could reach), and says where it listens
in ``server.info`` once it accepts calls (see ``tffreeze_api.localserver``)."""

from __future__ import annotations

import os
import secrets

from tffreeze_api import localserver

from . import __version__
from .settings import ServerSettings


def prepare(settings: ServerSettings) -> None:
    """Before the server starts: the folder closed to others, new files private, a token."""
    localserver.private_folder(settings.local_dir)
    os.umask(0o077)
    token = settings.auth_token_file
    if not os.path.exists(token):
        tmp = token + ".%d.part" % os.getpid()
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        os.replace(tmp, token)
    if os.path.exists(settings.socket):  # left by a server of the same pid that died without cleaning up
        os.unlink(settings.socket)


def announce(settings: ServerSettings, srv) -> None:
    info = {"pid": str(os.getpid()), "version": __version__, "grpc": "unix:" + settings.socket,
            "token-file": settings.auth_token_file}
    if srv.web_port is not None:
        info["web"] = "http://%s:%d" % (settings.host, srv.web_port)
    localserver.write_info(settings.local_dir, info)


def withdraw(settings: ServerSettings) -> None:
    """Stop advertising (clients then start a new server) before draining."""
    info = localserver.read_info(settings.local_dir)
    if info is not None and info["pid"] == str(os.getpid()):
        try:
            os.unlink(os.path.join(settings.local_dir, localserver.INFO))
        except FileNotFoundError:
            pass


__all__ = ["prepare", "announce", "withdraw"]
