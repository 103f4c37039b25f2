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
Unix socket address, ``grpc-PID.sock`` in a folder made for it by ``mkdtemp`` (a random name,
mode 0700) in ``$XDG_RUNTIME_DIR`` (when it is the user's own, 0700) or else ``/tmp``; the
socket's path is in ``server.info``. Never a predictable shared name: another user could make
it first.

Trust, checked before anything in the folder is read (``check_folder``, ``Folder``; the C#
and C++ clients apply the same rules, with the same messages):

1. every folder a lookup of the folder's path passes through (symbolic links followed), up
   to its parent, is owned by this user or root, and, when group or others may write to it,
   sticky; a symbolic link on the way is owned by this user or root. Otherwise someone else
   could rename the folder (or one above it) away and put their own in its place (in a
   sticky folder only an entry's owner and the folder's owner can do that);
2. the folder itself (``lstat``: never a symbolic link) is a folder, owned by this user
   (the effective uid: root is checked like anyone else), mode 0700 (nothing for group or
   others);
3. every entry in it is owned by this user and not writable by group or others, and none
   is a symbolic link; the token is not readable by them either; the socket is a socket.
   ``server.info``, ``token``, ``start.lock`` and ``server.log`` are opened with
   ``O_NOFOLLOW`` relative to the folder's descriptor and checked again with ``fstat`` on
   the opened file;
4. a socket outside the folder lies in a folder that passes 1 and 2; the server's process
   (``/proc/PID``) is this user's.

Anything else is refused (``UntrustedFolder``, a ``PermissionError``) with a message naming
the path, its owner and mode, why, and the fix; clients report it as FAILED_PRECONDITION.

The clients' caches in ``$TFFREEZE_CACHE_DIR`` (digests, received graphs) are checked by the
same code with other words (``Rules``: ``LOCAL`` here, ``CACHE`` there, through ``own_folder``
and ``Folder(..., CACHE)``): rules 1 and 2, except that the cache folder need only be closed
to writes by group and others, and rule 3 for each file read. A cache that fails is not used
(see ``tffreeze.cache``); it is not refused, as it only saves time.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import Dict, List, Optional

INFO = "server.info"
TOKEN = "token"
LOG = "server.log"
LOCK = "start.lock"
DATA = "data"
SOCKET_PREFIX = "tffreeze-sock-"  # mkdtemp's prefix for a socket folder outside the local folder
_MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes with its terminator; leave room
_MAX_LINKS = 40  # symbolic links followed on the way to the folder (the kernel's limit)
FIX = ("Unset TFFREEZE_CACHE_DIR or point it at a folder of your own (the local server's folder must be yours "
       "alone, mode 0700, inside folders only you or root can change), or pass --server to use a server you trust")
_FIX_LOWER = FIX[0].lower() + FIX[1:]
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class UntrustedFolder(PermissionError):
    """The local server's folder, a folder above it or a file in it could be another user's:
    nothing more is read from it. ``str()`` is the whole message."""

    def __str__(self) -> str:
        return self.args[0] if self.args else "untrusted folder"


@dataclass(frozen=True)
class Rules:
    """What the checks below say and how strict they are about a folder's mode: the local
    server's folder (``LOCAL``) and the clients' caches (``CACHE``) share the rules, not the words."""

    label: str = "the local server's folder"
    fix: str = FIX  # ends each message; a sentence
    mask: int = 0o077  # mode bits the folder may not have (LOCAL: 0700; CACHE: no group or other write)
    risk: str = ("Another user's server may be listening there, and it would receive your checkpoints; nothing in it "
                 "was read.")
    remake: str = "the local server makes what it needs anew"  # why removing an entry is harmless
    scan: bool = True  # Folder checks every entry (rule 3) when it opens the folder

    @property
    def fix_lower(self) -> str:
        return self.fix[0].lower() + self.fix[1:]


LOCAL = Rules()
CACHE_FIX = ("Point TFFREEZE_CACHE_DIR at a folder of your own (yours, not writable by group or others, inside "
             "folders only you or root can change), or set it to off")
CACHE = Rules(label="the cache folder", fix=CACHE_FIX, mask=0o022,
              risk="Another user could have put digests or graphs of their choosing in it; nothing in it was used.",
              remake="the cache is made anew", scan=False)


def local_dir() -> str:
    value = os.environ.get("TFFREEZE_CACHE_DIR", "").strip()
    if value and value.lower() not in ("off", "0", "none"):
        return os.path.join(os.path.abspath(value), "local")
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(os.path.abspath(base), "tffreeze", "local")


def _who(uid: int) -> str:
    try:
        return "%s (uid %d)" % (pwd.getpwuid(uid).pw_name, uid)
    except KeyError:
        return "uid %d" % uid


def _mode(st: os.stat_result) -> str:
    return "%04o" % stat.S_IMODE(st.st_mode)


def _above_ok(st: os.stat_result) -> bool:
    """A folder above the local folder: nobody but this user and root can change its entries."""
    if st.st_uid not in (os.geteuid(), 0):
        return False
    return not st.st_mode & 0o022 or bool(st.st_mode & stat.S_ISVTX)


def _refuse_above(folder: str, label: str, path: str, st: os.stat_result, link: bool = False,
                  fix: str = FIX) -> None:
    if st.st_uid not in (os.geteuid(), 0):
        why = "%s %s" % ("it is a symbolic link owned by" if link else "it is owned by", _who(st.st_uid))
    else:
        why = "group or others may write to it and it is not sticky"
        if st.st_uid == os.geteuid() and not link:  # the user's own folder: they can close it
            fix = "It is yours: chmod go-w %s closes it. Or: %s" % (path, fix[:1].lower() + fix[1:])
    raise UntrustedFolder(
        "%s %s lies in %s (owner %s, mode %s), which another user could change: %s, so they could swap the folder "
        "for one of their own. %s." % (label, folder, path, _who(st.st_uid), _mode(st), why, fix))


def check_parents(folder: str, label: str = "the local server's folder", fix: str = FIX) -> Optional[str]:
    """Rule 1 for ``folder`` (absolute): each folder its lookup passes through, symbolic links
    followed, up to its parent. The parent's real path, or None when part of the way does not
    exist yet (this user makes the rest: it is checked again once made). ``fix`` ends the
    messages (the caches' folder has its own, ``CACHE.fix``)."""
    pending: List[str] = [p for p in folder.split("/")[1:-1] if p]
    current = "/"
    root = os.lstat("/")
    if not _above_ok(root):
        _refuse_above(folder, label, "/", root, fix=fix)
    links = 0
    while pending:
        name = pending.pop(0)
        if name in ("", "."):
            continue
        if name == "..":
            current = os.path.dirname(current)
            continue
        path = os.path.join(current, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_LINKS:
                raise UntrustedFolder("%s %s: too many symbolic links on the way. %s." % (label, folder, fix))
            if st.st_uid not in (os.geteuid(), 0):  # in a sticky folder its owner may repoint it
                _refuse_above(folder, label, path, st, link=True, fix=fix)
            target = os.readlink(path)
            if target.startswith("/"):
                current = "/"
            pending[:0] = target.split("/")
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise UntrustedFolder("%s %s: %s on the way is not a folder. %s." % (label, folder, path, fix))
        if not _above_ok(st):
            _refuse_above(folder, label, path, st, fix=fix)
        current = path
    return current


def _check_folder_stat(folder: str, st: os.stat_result, label: str, rules: Rules = LOCAL) -> None:
    """Rule 2, on an lstat (or fstat) of the folder."""
    me = os.geteuid()
    fix, fix_lower = rules.fix, rules.fix_lower
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(folder)
        except OSError:
            target = "?"
        raise UntrustedFolder("%s %s is a symbolic link (to %s, owner %s): it must be a real folder, which nobody "
                              "else can point elsewhere. %s." % (label, folder, target, _who(st.st_uid), fix))
    if not stat.S_ISDIR(st.st_mode):
        raise UntrustedFolder("%s %s is not a folder (owner %s, mode %s). %s." % (label, folder, _who(st.st_uid),
                                                                                 _mode(st), fix))
    if st.st_uid != me:
        raise UntrustedFolder(
            "%s %s is not yours: it is owned by %s, mode %s, and you are %s. %s %s."
            % (label, folder, _who(st.st_uid), _mode(st), _who(me), rules.risk, fix))
    if st.st_mode & rules.mask:
        if rules.mask == 0o077:
            raise UntrustedFolder(
                "%s %s is open to other users (mode %s, owner %s): it must be yours alone (mode 0700). `chmod 700 %s`, "
                "or %s." % (label, folder, _mode(st), _who(st.st_uid), folder, fix_lower))
        raise UntrustedFolder(
            "%s %s is writable by other users (mode %s, owner %s). %s `chmod go-w %s`, or %s."
            % (label, folder, _mode(st), _who(st.st_uid), rules.risk, folder, fix_lower))


def check_folder(folder: str, label: Optional[str] = None, rules: Rules = LOCAL) -> os.stat_result:
    """Rules 1 and 2 for ``folder``; FileNotFoundError when it (or a folder above) is missing."""
    folder = os.path.abspath(folder)
    label = rules.label if label is None else label
    parent = check_parents(folder, label, rules.fix)
    if parent is None:
        raise FileNotFoundError(2, "No such file or directory", folder)
    st = os.lstat(os.path.join(parent, os.path.basename(folder)))
    _check_folder_stat(folder, st, label, rules)
    return st


def _check_entry(folder: str, name: str, st: os.stat_result, secret: bool = False, rules: Rules = LOCAL) -> None:
    """Rule 3 for one entry of the folder (an lstat, or an fstat of the opened file)."""
    path = os.path.join(folder, name)
    me = os.geteuid()
    where = "in " + rules.label
    fix = "Remove it (%s), or %s." % (rules.remake, rules.fix_lower)
    if stat.S_ISLNK(st.st_mode):
        raise UntrustedFolder("%s, %s, is a symbolic link (owner %s): nothing there may "
                              "point elsewhere. %s" % (path, where, _who(st.st_uid), fix))
    if st.st_uid != me:
        raise UntrustedFolder("%s, %s, is owned by %s, mode %s, not by you (%s): another "
                              "user could have written it. %s" % (path, where, _who(st.st_uid), _mode(st), _who(me),
                                                                  fix))
    if st.st_mode & (0o077 if secret else 0o022):
        raise UntrustedFolder("%s, %s, is %s by other users (mode %s, owner %s). %s"
                              % (path, where, "readable or writable" if secret else "writable", _mode(st),
                                 _who(st.st_uid), fix))


class Folder:
    """The local folder (or, with ``rules=CACHE``, the caches' folder), checked (rules 1-3;
    with CACHE, 1 and 2 and no group or other write) and held open: files are opened relative
    to its descriptor with O_NOFOLLOW and checked with fstat. FileNotFoundError when it is
    missing, UntrustedFolder when it could be another user's."""

    def __init__(self, path: str, rules: Rules = LOCAL):
        self.path = os.path.abspath(path)
        self.rules = rules
        st = check_folder(self.path, rules=rules)
        self.fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
        try:
            opened = os.fstat(self.fd)
            if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino):
                raise UntrustedFolder("%s %s changed while it was checked. %s." % (rules.label, self.path, rules.fix))
            _check_folder_stat(self.path, opened, rules.label, rules)
            for name in os.listdir(self.fd) if rules.scan else ():
                try:
                    entry = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
                except FileNotFoundError:  # gone since (a server.info.PID.part renamed, a socket removed)
                    continue
                _check_entry(self.path, name, entry, name == TOKEN, rules)
        except BaseException:
            os.close(self.fd)
            raise

    def __enter__(self) -> "Folder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def open(self, name: str, flags: int = os.O_RDONLY, mode: int = 0o600, secret: bool = False) -> int:
        """A descriptor of ``name`` in the folder: never through a symbolic link, a regular
        file of this user's that others cannot write (nor read, when ``secret``)."""
        fd = os.open(name, flags | _NOFOLLOW, mode, dir_fd=self.fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise UntrustedFolder("%s, in %s, is not a regular file (mode %s). Remove it, or %s."
                                      % (os.path.join(self.path, name), self.rules.label, _mode(st),
                                         self.rules.fix_lower))
            _check_entry(self.path, name, st, secret, self.rules)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def read(self, name: str, secret: bool = False) -> Optional[str]:
        """The text of ``name``, or None when there is none."""
        try:
            fd = self.open(name, secret=secret)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == getattr(os, "ELOOP", 40) and not isinstance(exc, UntrustedFolder):
                raise UntrustedFolder("%s, in %s, is a symbolic link. Remove it, or %s."
                                      % (os.path.join(self.path, name), self.rules.label,
                                         self.rules.fix_lower)) from None
            raise
        with open(fd, encoding="utf-8") as fh:
            return fh.read()

    def sub(self, name: str, make: bool = False) -> "Folder":
        """The folder ``name`` in this one, opened with O_NOFOLLOW relative to it and checked
        (rule 2, this folder's rules); made (0700) first when ``make``. FileNotFoundError when
        it is missing."""
        if make:
            try:
                os.mkdir(name, 0o700, dir_fd=self.fd)
            except FileExistsError:
                pass
        path = os.path.join(self.path, name)
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in (getattr(os, "ELOOP", 40), getattr(os, "ENOTDIR", 20)):
                _check_folder_stat(path, self.lstat(name), self.rules.label, self.rules)
            raise
        sub = Folder.__new__(Folder)
        sub.path, sub.rules, sub.fd = path, self.rules, fd
        try:
            _check_folder_stat(path, os.fstat(fd), self.rules.label, self.rules)
        except BaseException:
            sub.close()
            raise
        return sub

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(name, dir_fd=self.fd, follow_symlinks=False)

    def unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass


def make_parents(path: str) -> None:
    """The missing folders above ``path``, made by this user with mode 0755 whatever the umask
    (umask 002, usual with a group per user, would make them group-writable, which the trust
    rules then refuse)."""
    missing = []
    folder = os.path.dirname(path)
    while folder and not os.path.isdir(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, 0o755)  # (the umask only takes bits away: never group- or other-writable)
        except FileExistsError:
            pass


def own_folder(path: str, rules: Rules = CACHE, make: bool = False) -> Folder:
    """``path`` checked by ``rules`` (the folders above it, then it) and held open; made first
    (mode 0700; missing folders above it too) when ``make``. FileNotFoundError when it is
    missing, UntrustedFolder when it, or a folder above it, could be another user's."""
    path = os.path.abspath(path)
    if make:
        if check_parents(path, rules.label, rules.fix) is None:  # what is missing is made by this user
            make_parents(path)
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    return Folder(path, rules)


def private_folder(path: str) -> str:
    """Make ``path`` (mode 0700, the folders above it as needed) or check an existing one:
    rules 1 to 3. UntrustedFolder when it, or a folder above it, could be another user's."""
    path = os.path.abspath(path)
    if check_parents(path) is None:  # what is missing is made by this user
        make_parents(path)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    Folder(path).close()
    return path


def _socket_bases() -> List[str]:
    """Where a socket folder may be made: $XDG_RUNTIME_DIR when it is this user's alone (rules
    1 and 2), then /tmp (root's and sticky)."""
    bases = []
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/"):
        try:
            check_folder(runtime, "$XDG_RUNTIME_DIR")
            bases.append(os.path.abspath(runtime))
        except OSError:
            pass
    check_parents("/tmp/x", "the socket's folder")  # /tmp itself must be root's (or yours) and sticky
    return bases + ["/tmp"]


def _remove_socket_folder(folder: str, socket: str, pid: int) -> None:
    if os.getpid() != pid:  # a forked child of the server: not its to remove
        return
    try:
        os.unlink(socket)
    except OSError:
        pass
    try:
        os.rmdir(folder)
    except OSError:
        pass


def socket_path(folder: str, pid: int) -> str:
    """The socket of the server with process id ``pid`` (one per server: a server stopping
    removes its own socket, never the next one's). When the folder's path is too long for a
    socket, a new private folder is made (mkdtemp) and removed when this process exits."""
    path = os.path.join(folder, "grpc-%d.sock" % pid)
    if len(path.encode()) <= _MAX_SOCKET_PATH:
        return path
    name = "grpc-%d.sock" % pid
    for base in _socket_bases():  # the first where the socket's path fits (mkdtemp adds 8 characters)
        if len(os.path.join(base, SOCKET_PREFIX + "12345678", name).encode()) <= _MAX_SOCKET_PATH:
            break
    else:
        raise OSError("no place for the local server's socket: %s is too long for a Unix socket" % path)
    made = tempfile.mkdtemp(prefix=SOCKET_PREFIX, dir=base)  # mode 0700, a random name nobody could take first
    path = os.path.join(made, name)
    atexit.register(_remove_socket_folder, made, path, os.getpid())
    return path


def check_socket(folder: str, target: str) -> str:
    """Rules 3 and 4 for the socket ``target`` (``unix:PATH``) named by server.info; its path.
    FileNotFoundError when it is gone."""
    if not target.startswith("unix:"):
        raise UntrustedFolder("%s in %s names %r, not a Unix socket. %s." % (INFO, folder, target, FIX))
    path = os.path.abspath(target[len("unix:"):])
    parent = os.path.dirname(path)
    if parent != os.path.abspath(folder):
        check_folder(parent, "the local server's socket folder")
    st = os.lstat(path)
    me = os.geteuid()
    if not stat.S_ISSOCK(st.st_mode) or st.st_uid != me or st.st_mode & 0o022:
        raise UntrustedFolder("the local server's socket %s is %s (owner %s, mode %s): it must be a socket of yours "
                              "that others cannot write. %s."
                              % (path, "not a socket" if not stat.S_ISSOCK(st.st_mode) else
                                 "not yours" if st.st_uid != me else "writable by others", _who(st.st_uid),
                                 _mode(st), FIX))
    return path


def remove_stale_socket(folder: str, target: str) -> None:
    """The socket (and its mkdtemp folder) of a server that died without cleaning up, if
    they are this user's."""
    path = os.path.abspath(target[len("unix:"):]) if target.startswith("unix:") else ""
    parent = os.path.dirname(path)
    if not path or parent == os.path.abspath(folder) or not os.path.basename(parent).startswith(SOCKET_PREFIX):
        return
    try:
        check_folder(parent, "the local server's socket folder")
    except OSError:
        return
    shutil.rmtree(parent, ignore_errors=True)


def read_info(folder: str) -> Optional[Dict[str, str]]:
    """server.info's keys, or None when there is none (or it is not one). UntrustedFolder when
    the folder, a folder above it or a file in it could be another user's: nothing is read."""
    try:
        with Folder(folder) as f:
            text = f.read(INFO)
    except UntrustedFolder:
        raise
    except (OSError, UnicodeDecodeError):
        return None
    if text is None:
        return None
    pairs = (line.partition(" ") for line in text.splitlines())
    info = {k: v for k, _, v in pairs if k}
    if not {"pid", "version", "grpc", "token-file"} <= set(info) or not info["pid"].isdigit():
        return None
    return info


def write_info(folder: str, info: Dict[str, str]) -> None:
    with Folder(folder) as f:
        tmp = INFO + ".%d.part" % os.getpid()
        f.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=f.fd)
        with open(fd, "w", encoding="utf-8") as fh:
            fh.write("".join("%s %s\n" % kv for kv in info.items()))
        os.replace(tmp, INFO, src_dir_fd=f.fd, dst_dir_fd=f.fd)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs, is this user's, and is a tffreeze server (not a stranger that
    reused the number)."""
    try:
        if os.stat("/proc/%d" % pid).st_uid != os.geteuid():
            return False
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            return b"tffreeze" in fh.read()
    except OSError:
        return False


def read_token(folder: str) -> str:
    """The token in ``folder`` (checked like server.info, and readable by this user only)."""
    with Folder(folder) as f:
        text = f.read(TOKEN, secret=True)
    if text is None:
        raise FileNotFoundError(2, "No such file or directory", os.path.join(folder, TOKEN))
    return text.strip()


__all__ = ["INFO", "TOKEN", "LOG", "LOCK", "DATA", "SOCKET_PREFIX", "FIX", "CACHE_FIX", "Rules", "LOCAL", "CACHE",
           "UntrustedFolder", "Folder", "local_dir", "check_parents", "check_folder", "own_folder", "private_folder",
           "socket_path", "check_socket", "remove_stale_socket", "read_info", "write_info", "alive", "read_token"]
