"""The per-user local server: started on demand when no server is named (no ``--server``,
no ``$TFFREEZE_SERVER``), kept warm between calls, stopped after an idle period or by
``tffreeze local-server stop``. The folder and the files in it are described in
``tffreeze_api.localserver``; the server is ``tffreeze serve --local`` (the same sandbox and
limits as any ``tffreeze serve``), run by this Python with its log in that folder."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from tffreeze_api import localserver

from . import __version__
from .errors import FailedPreconditionError, UnavailableError

START_SECONDS = 180.0  # the longest a start may take (importing TensorFlow on a busy machine)
_LOG_KEEP = 1 << 20  # server.log beyond this is moved to server.log.1 when a server starts
STARTING = "starting your local server (a few seconds, once)"
_noted = set()  # notes already printed by this process
_used: Optional["Endpoint"] = None  # the local server this process's calls went to last


@dataclass
class Endpoint:
    target: str  # unix:SOCKET
    token: str
    pid: int
    web: str = ""  # http://127.0.0.1:PORT (gRPC-Web)
    started: bool = False  # this call started it


class _Trust:
    """The folder's trust rules (tffreeze_api.localserver) broken: FAILED_PRECONDITION, as in
    the C# and C++ clients; nothing in the folder was read."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, localserver.UntrustedFolder):
            raise FailedPreconditionError(str(exc)) from None
        return False


def _running(folder: str) -> Optional[dict]:
    """The server.info of a live local server of this version; a server of another version
    (the package was upgraded) is stopped first. UntrustedFolder before anything is read
    from a folder (or file, or socket) that could be another user's."""
    info = localserver.read_info(folder)
    if info is None:
        return None
    pid = int(info["pid"])
    if not localserver.alive(pid):
        return None
    try:
        localserver.check_socket(folder, info["grpc"])
    except FileNotFoundError:
        return None
    if info["version"] != __version__:
        _terminate(pid)
        return None
    return info


def _endpoint(folder: str, info: dict, started: bool = False) -> Endpoint:
    try:
        token = localserver.read_token(folder)
    except localserver.UntrustedFolder:
        raise
    except OSError as exc:
        raise UnavailableError("cannot read the local server's token %s: %s"
                               % (os.path.join(folder, localserver.TOKEN), exc.strerror or exc))
    return Endpoint(info["grpc"], token, int(info["pid"]), info.get("web", ""), started)


def installation() -> Optional[str]:
    """Where the tffreeze_server package this Python would run is installed (the folder holding
    it, as the server's server.info says ``installation``); None when it is not installed."""
    spec = importlib.util.find_spec("tffreeze_server")
    if spec is None or not spec.origin:
        return None
    return os.path.dirname(os.path.dirname(os.path.realpath(spec.origin)))


def other_installation(info: dict) -> Optional[str]:
    """The running server's installation when it is not this client's (another checkout or
    environment of the same version), else None."""
    theirs = info.get("installation", "")
    mine = installation()
    if not theirs or mine is None:
        return None
    if theirs != mine or info.get("python", sys.executable) != sys.executable:
        return "%s (python %s)" % (theirs, info.get("python", "?"))
    return None


def _note_other(info: dict) -> None:
    other = other_installation(info)
    if other is None or other in _noted:
        return
    _noted.add(other)
    _say("tffreeze: note: the local server running (pid %s) is another installation's: %s; this one is %s (python "
         "%s). It serves this call. To run this installation's code instead: `tffreeze local-server stop` (it is "
         "the one local server of your user), then call again" % (info["pid"], other, installation(), sys.executable))


def _say(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def ensure(extra_args: Optional[List[str]] = None) -> Endpoint:
    """The running local server, or one started now (under a lock: clients starting at the
    same moment share one server). The folder is checked before anything in it is read.
    A server of another installation is used, and said so on stderr."""
    global _used
    _used = _ensure(extra_args)
    return _used


def went_away() -> Optional[int]:
    """The pid of the local server this process used when it is no longer the one running
    (stopped by `tffreeze local-server stop` or its idle exit, or killed): a command it failed
    may run again on a new one. None otherwise."""
    if _used is None:
        return None
    try:
        info = status()
    except FailedPreconditionError:
        return None
    return _used.pid if info is None or int(info["pid"]) != _used.pid else None


def _ensure(extra_args: Optional[List[str]] = None) -> Endpoint:
    folder = localserver.local_dir()
    with _Trust():
        info = _running(folder)
        if info is not None:
            _note_other(info)
            return _endpoint(folder, info)
        try:
            localserver.private_folder(folder)
        except localserver.UntrustedFolder:
            raise
        except OSError as exc:
            given = " (from $TFFREEZE_CACHE_DIR)" if os.environ.get("TFFREEZE_CACHE_DIR") else ""
            why = "%s: %s" % (exc.strerror, exc.filename) if exc.strerror and exc.filename else str(exc)
            raise UnavailableError("cannot use the local server's folder %s%s (%s): set $TFFREEZE_CACHE_DIR to a "
                                   "folder you can write, or pass --server to use a running server"
                                   % (folder, given, why)) from None
        with localserver.Folder(folder) as held:
            lock_fd = held.open(localserver.LOCK, os.O_RDWR | os.O_CREAT)
        with open(lock_fd) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            info = _running(folder)
            if info is not None:
                _note_other(info)
                return _endpoint(folder, info)
            return _endpoint(folder, _start(folder, extra_args or []), started=True)


def _server_command() -> List[str]:
    if importlib.util.find_spec("tffreeze_server") is None:
        raise UnavailableError(
            "no server named (--server, $TFFREEZE_SERVER) and no local server to start: the tffreeze-server "
            "package is not installed in %s. Install it (`pip install -e server`, or `make setup`), or pass "
            "--server HOST:PORT" % sys.executable)
    # The package's own script where it is installed beside this Python, so that `ps` shows
    # tffreeze-server (its folder, already bound read-only in the workers' sandbox, goes on
    # sys.path). Else -c, not -m: -m would put the working folder (which holds the store) on
    # sys.path, and the workers' sandbox binds sys.path read-only.
    script = os.path.join(os.path.dirname(sys.executable), "tffreeze-server")
    if os.path.isfile(script):
        return [sys.executable, script, "--local"]
    return [sys.executable, "-c", "import sys; from tffreeze_server.cli import main; sys.exit(main())", "--local"]


def _start(folder: str, extra_args: List[str]) -> dict:
    command = _server_command() + [folder] + extra_args
    idle = os.environ.get("TFFREEZE_LOCAL_IDLE_SECONDS", "").strip()
    if idle and "--idle-exit" not in extra_args:
        command += ["--idle-exit", idle]
    log_path = os.path.join(folder, localserver.LOG)
    try:
        if sys.stderr.isatty():  # importing TensorFlow takes a few seconds: say why nothing moves
            _say(STARTING)
    except (AttributeError, ValueError):
        pass
    with localserver.Folder(folder) as held:
        stale = localserver.read_info(folder)
        if stale is not None and not localserver.alive(int(stale["pid"])):  # killed: its socket folder stays
            localserver.remove_stale_socket(folder, stale["grpc"])
        for name in os.listdir(held.fd):  # sockets of servers killed without cleaning up
            if name.startswith("grpc-") and name.endswith(".sock") and not localserver.alive(int(name[5:-5] or 0)):
                held.unlink(name)
        try:
            if held.lstat(localserver.LOG).st_size > _LOG_KEEP:
                os.replace(localserver.LOG, localserver.LOG + ".1", src_dir_fd=held.fd, dst_dir_fd=held.fd)
        except OSError:
            pass
        log_fd = held.open(localserver.LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    with open(log_fd, "ab") as log:
        log.write(b"--- %s: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S").encode(), " ".join(command).encode()))
        log.flush()
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, close_fds=True,
                                start_new_session=True, cwd=folder)
    # Reap it when it stops (idle, or `tffreeze local-server stop`) should this process still run.
    threading.Thread(target=proc.wait, name="tffreeze-local-server", daemon=True).start()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        info = localserver.read_info(folder)
        if info is not None and info["pid"] == str(proc.pid) and _socket_ok(folder, info):
            return info
        if proc.poll() is not None:
            raise UnavailableError("the local server did not start (exit %s): %s. Its log: %s"
                                   % (proc.returncode, _last_line(log_path), log_path))
        time.sleep(0.05)
    _terminate(proc.pid)
    raise UnavailableError("the local server did not start within %d s; its log: %s" % (START_SECONDS, log_path))


def _socket_ok(folder: str, info: dict) -> bool:
    try:
        localserver.check_socket(folder, info["grpc"])
    except FileNotFoundError:
        return False
    return True


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = [ln for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return "?"
    return lines[-1].strip() if lines else "?"


def _terminate(pid: int, seconds: float = 60.0) -> bool:
    """SIGTERM (the server drains, then exits); True once it is gone."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not localserver.alive(pid):
            return True
        time.sleep(0.05)
    return False


def status() -> Optional[dict]:
    """server.info of the running local server, or None; FailedPreconditionError when the
    folder could be another user's (nothing in it is read then)."""
    with _Trust():
        info = localserver.read_info(localserver.local_dir())
    return info if info is not None and localserver.alive(int(info["pid"])) else None


def store_use(folder: Optional[str] = None) -> Tuple[int, int]:
    """(bytes, files) in the local server's store (its data folder): blobs, uploads in progress,
    cached results; (0, 0) when there is none."""
    data = os.path.join(folder or localserver.local_dir(), localserver.DATA)
    total = count = 0
    for root, dirs, files in os.walk(data):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
                count += 1
            except OSError:
                pass
    return total, count


def differences(info: dict, wanted: Dict[str, str]) -> List[Tuple[str, str, str]]:
    """(flag, the running server's value, the one asked for) of each option the running server
    was started with otherwise (``wanted``: server.info key -> value, as the server writes it)."""
    out = []
    for key, value in wanted.items():
        have = info.get(key)
        if have is None:
            continue
        try:
            same = float(have) == float(value)
        except ValueError:
            same = have == value
        if not same:
            out.append(("--" + ("max-store-bytes" if key == "store-bytes" else key), have, value))
    return out


def clean() -> Tuple[Optional[int], int]:
    """Stop the local server if it runs, then remove its store (the data folder): (the pid
    stopped or None, bytes freed). The folder is checked first, as everywhere."""
    folder = localserver.local_dir()
    pid = stop()
    freed, _ = store_use(folder)
    with _Trust():
        try:
            with localserver.Folder(folder) as held:
                try:
                    st = held.lstat(localserver.DATA)
                except FileNotFoundError:
                    return pid, 0
                if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
                    raise localserver.UntrustedFolder(
                        "%s is not a folder of yours; nothing was removed. Remove it yourself, or %s"
                        % (os.path.join(folder, localserver.DATA), localserver.FIX[0].lower() + localserver.FIX[1:]))
                shutil.rmtree(os.path.join(folder, localserver.DATA))
        except FileNotFoundError:
            return pid, 0
    return pid, freed


def stop() -> Optional[int]:
    """Stop the local server; its pid, or None when none was running."""
    info = status()
    if info is None:
        return None
    pid = int(info["pid"])
    if not _terminate(pid):
        raise UnavailableError("the local server (pid %d) did not stop within 60 s" % pid)
    return pid


__all__ = ["Endpoint", "ensure", "went_away", "status", "stop", "clean", "store_use", "differences", "installation",
           "other_installation", "START_SECONDS", "STARTING"]
