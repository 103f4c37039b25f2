"""The local server's folder is checked before anything in it is trusted (issue 32, finding 3).

The attack: $TFFREEZE_CACHE_DIR names a shared folder (mode 1777); another user has started
`tffreeze serve --local` there first, so ``local/`` and its server.info, token and socket are
theirs. A client that read server.info and the token before checking who owns the folder
would upload the victim's checkpoint to that server. Every client (Python, C#, C++) and the
server's own --local mode must refuse, naming the folder, its owner and mode, why and the
fix, as FAILED_PRECONDITION; the other user's server must receive nothing.

The victim is the user running the tests (root in CI: root can read every file, so ownership
is what is checked, against the victim's uid); the attacker is ``users.ordinary(SECOND)``,
which exists only where the tests run as root (elsewhere these tests skip, or fail under
TFFREEZE_REQUIRE_NONROOT=1).

Also: a file of another user's, or one others may write (or read, for the token), in the
victim's own folder is refused; so are a symbolic link as the folder and a folder above it
that another user could change; a socket path too long for the folder goes to a random-named
0700 folder (never the predictable /tmp/tffreeze-UID another user could make first)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

import models
import users
from test_parity import CPP, CS, PY, built  # noqa: F401 - built: the C#/C++ clients, or a skip that says why

from tffreeze_api import localserver

CLIENTS = (("py", PY), ("cs", CS), ("cpp", CPP))


@pytest.fixture(scope="module")
def attacker():
    return users.ordinary(users.SECOND)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return models.dense(str(tmp_path_factory.mktemp("trust") / "run"), True, steps=[100])


def _victim_env(cache: str, **extra) -> dict:
    env = dict(os.environ, TFFREEZE_CACHE_DIR=cache, TFFREEZE_COMMAND=PY, **extra)
    for name in ("TFFREEZE_SERVER", "TFFREEZE_WEB_SERVER", "XDG_RUNTIME_DIR"):
        env.pop(name, None)
    return env


def _run(argv, env, **kw):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, **kw)


def _refused(out, *words):
    """One line on stderr: FAILED_PRECONDITION, exit 1, the given words and the fix."""
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert "[FAILED_PRECONDITION]" in out.stderr, out.stderr
    assert "TFFREEZE_CACHE_DIR" in out.stderr and "folder of your own" in out.stderr, out.stderr
    for word in words:
        assert word in out.stderr, (word, out.stderr)


def _metrics(port: int, token: str) -> str:
    request = urllib.request.Request("http://127.0.0.1:%d/metrics" % port,
                                     headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read().decode()


def _calls(metrics: str) -> float:
    return sum(float(m.group(1)) for m in re.finditer(r"^tffreeze_calls_total\{[^}]*\} (\S+)$", metrics, re.M))


def _uploaded(metrics: str) -> float:
    found = re.search(r"^tffreeze_uploaded_bytes_total (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


def _files_under(path: str) -> list:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(path) for f in files)


def _peek_info(folder: str):
    try:
        with open(os.path.join(folder, "server.info")) as fh:
            info = dict(line.rstrip("\n").split(" ", 1) for line in fh if " " in line)
    except OSError:
        return None
    return info if "web" in info else None


@pytest.fixture(scope="module")
def attack(attacker):
    """A shared 1777 cache folder (root's, like /srv/shared) in which the attacker has started
    `tffreeze serve --local` first; its metrics port and token."""
    shared = tempfile.mkdtemp(prefix="tffreeze-shared-", dir="/tmp")
    os.chmod(shared, 0o1777)
    env = attacker.env(TFFREEZE_CACHE_DIR=shared)
    proc = subprocess.Popen(attacker.wrap() + [PY, "serve", "--local", "--metrics-port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    folder = os.path.join(shared, "local")
    deadline = time.monotonic() + 180
    info = None
    while time.monotonic() < deadline and proc.poll() is None:
        info = _peek_info(folder)  # as root, unchecked: the clients must refuse this very file
        if info is not None:
            break
        time.sleep(0.1)
    try:
        assert info is not None, "the attacker's server did not start: %s" % "".join(lines)
        metrics = next((m for m in (re.search(r"metrics on http://[^:]+:(\d+)/metrics", ln) for ln in lines) if m),
                       None)
        assert metrics, lines
        with open(os.path.join(folder, "token")) as fh:  # the test reads it as root, to watch the server
            token = fh.read().strip()
        yield {"shared": shared, "folder": folder, "info": info, "proc": proc, "metrics": int(metrics.group(1)),
               "token": token, "uid": attacker.uid, "name": attacker.name}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(shared, ignore_errors=True)


@pytest.mark.parametrize("victim", ["me", "ordinary"])
def test_another_users_server_in_a_shared_cache_dir_gets_nothing(attack, ckpt, tmp_path, victim):
    """The victim: the test's own user (root in CI: it could read every file of the attacker's,
    so only the ownership check stands in the way), or an ordinary user (FIRST)."""
    # The attacker's server is serving: server.info, the token and the socket are theirs.
    folder, info = attack["folder"], attack["info"]
    assert os.stat(folder).st_uid == attack["uid"] and os.stat(attack["shared"]).st_mode & 0o7777 == 0o1777
    assert info["grpc"] == "unix:" + os.path.join(folder, "grpc-%s.sock" % info["pid"]) and "web" in info
    before = _metrics(attack["metrics"], attack["token"])
    assert _uploaded(before) == 0

    if victim == "me":
        wrap, env, source, out_dir, me = [], _victim_env(attack["shared"]), ckpt.directory, str(tmp_path), None
    else:
        me = users.ordinary()
        out_dir = me.folder("tffreeze-victim-")
        source = models.dense(os.path.join(out_dir, "run"), True, steps=[100]).directory
        me.give(out_dir)
        wrap, env = me.wrap(), me.env(TFFREEZE_CACHE_DIR=attack["shared"], TFFREEZE_COMMAND=PY)
    why = ("the local server's folder %s is not yours: it is owned by %s (uid %d), mode 0700, and you are"
           % (folder, attack["name"], attack["uid"]))
    try:
        for name, client in CLIENTS:
            out = os.path.join(out_dir, name + ".pb")
            done = _run(wrap + [client, "freeze", source, "-o", out], env)
            _refused(done, why, "nothing in it was read")
            assert done.stderr.startswith("tffreeze%s freeze: " % ("" if name == "py" else "-" + name)), done.stderr
            assert len(done.stderr.strip().splitlines()) == 1, done.stderr
            assert not os.path.exists(out)
        # the Python client's local-server commands, and the server's own --local mode
        for argv in ([PY, "local-server", "status"], [PY, "local-server", "stop"], [PY, "local-server", "start"]):
            _refused(_run(wrap + argv, env), why)
        served = _run(wrap + [PY, "serve", "--local"], env)
        assert served.returncode == 1 and why in served.stderr, served.stderr
        assert attack["proc"].poll() is None  # `stop` did not stop (nor signal) the other user's server
    finally:
        if me is not None:
            shutil.rmtree(out_dir, ignore_errors=True)

    # ... and the attacker's server received nothing: no call, no byte, no blob, no partial upload
    after = _metrics(attack["metrics"], attack["token"])
    assert _calls(after) == _calls(before) and _uploaded(after) == 0, after
    data = os.path.join(folder, "data")
    assert _files_under(os.path.join(data, "blobs")) == [] and _files_under(os.path.join(data, "partial")) == []
    assert sorted(os.listdir(folder)) == sorted(["data", "grpc-%s.sock" % info["pid"], "server.info", "token"])

    # Control: the watch sees a call when there is one (one with the attacker's own token).
    import grpc
    from tffreeze_api.v1 import service_pb2, service_pb2_grpc
    with grpc.insecure_channel(info["grpc"]) as channel:
        service_pb2_grpc.FreezeServiceStub(channel).GetCapabilities(
            service_pb2.GetCapabilitiesRequest(), timeout=60, metadata=[("authorization", "Bearer " + attack["token"])])
    assert _calls(_metrics(attack["metrics"], attack["token"])) == _calls(before) + 1


@pytest.mark.parametrize("case", ["sticky-but-theirs", "theirs-not-writable"])
def test_a_folder_above_that_another_user_could_change_is_refused(attacker, ckpt, tmp_path, case):
    """The victim's own 0700 folder, in a folder the attacker owns: even sticky, its owner may
    rename what is in it, and swap the victim's folder for one of theirs."""
    above = attacker.folder("tffreeze-above-")
    try:
        os.chmod(above, 0o1777 if case == "sticky-but-theirs" else 0o755)
        cache = os.path.join(above, "cache")
        os.makedirs(os.path.join(cache, "local"), mode=0o700)
        os.chmod(os.path.join(cache, "local"), 0o700)
        env = _victim_env(cache)
        for name, client in CLIENTS:
            done = _run([client, "freeze", ckpt.directory, "-o", str(tmp_path / (name + ".pb"))], env)
            _refused(done, "lies in %s (owner %s (uid %d)" % (above, attacker.name, attacker.uid),
                     "it is owned by %s" % attacker.name, "swap the folder")
        assert sorted(os.listdir(os.path.join(cache, "local"))) == []  # nothing made, nothing started
    finally:
        shutil.rmtree(above, ignore_errors=True)


def test_my_own_folder_above_open_to_others_gets_the_chmod_that_closes_it(ckpt, tmp_path):
    """A cache folder of the user's own that group or others may write (chmod 777): every
    client says it is theirs and gives the chmod that closes it."""
    cache = str(tmp_path / "cache")
    os.makedirs(os.path.join(cache, "local"), mode=0o700)
    os.chmod(cache, 0o777)
    try:
        env = dict(os.environ, TFFREEZE_CACHE_DIR=cache)
        for name, client in CLIENTS:
            done = _run([client, "freeze", ckpt.directory, "-o", str(tmp_path / (name + ".pb"))], env)
            _refused(done, "lies in %s" % cache, "group or others may write to it",
                     "It is yours: chmod go-w %s closes it. Or: " % cache)
        os.chmod(cache, 0o755)  # following the advice, the freeze goes on
        for name, client in CLIENTS:
            done = _run([client, "freeze", ckpt.directory, "-o", str(tmp_path / (name + ".pb"))], env)
            assert done.returncode == 0, (name, done.stderr)
    finally:
        _run([PY, "local-server", "stop"], dict(os.environ, TFFREEZE_CACHE_DIR=cache))


def _own_folder(tmp_path) -> str:
    cache = str(tmp_path / "cache")
    folder = os.path.join(cache, "local")
    os.makedirs(folder, mode=0o700)
    os.chmod(folder, 0o700)
    return folder


@pytest.mark.parametrize("case", ["info-of-another-user", "group-writable-log", "token-readable-by-others",
                                  "lock-is-a-symlink", "folder-open-to-others"])
def test_my_folder_with_something_others_could_write_is_refused(attacker, ckpt, tmp_path, case):
    folder = _own_folder(tmp_path)
    info = os.path.join(folder, "server.info")
    with open(info, "w") as fh:  # a live pid of the victim's that names "tffreeze" would not be needed: refused first
        fh.write("pid %d\nversion 0\ngrpc unix:%s/grpc-1.sock\ntoken-file %s/token\nweb http://127.0.0.1:1\n"
                 % (os.getpid(), folder, folder))
    os.chmod(info, 0o600)
    token = os.path.join(folder, "token")
    with open(token, "w") as fh:
        fh.write("0" * 64 + "\n")
    os.chmod(token, 0o600)
    if case == "info-of-another-user":
        os.chown(info, attacker.uid, attacker.gid)
        words = ["%s, in the local server's folder, is owned by %s (uid %d), mode 0600, not by you" %
                 (info, attacker.name, attacker.uid)]
    elif case == "group-writable-log":
        log = os.path.join(folder, "server.log")
        open(log, "w").close()
        os.chmod(log, 0o620)
        words = ["%s, in the local server's folder, is writable by other users (mode 0620" % log]
    elif case == "token-readable-by-others":
        os.chmod(token, 0o644)
        words = ["%s, in the local server's folder, is readable or writable by other users (mode 0644" % token]
    elif case == "lock-is-a-symlink":
        os.symlink("/etc/passwd", os.path.join(folder, "start.lock"))
        words = ["%s/start.lock, in the local server's folder, is a symbolic link" % folder]
    else:
        os.chmod(folder, 0o755)
        words = ["the local server's folder %s is open to other users (mode 0755" % folder, "chmod 700 %s" % folder]
    env = _victim_env(os.path.dirname(folder))
    for name, client in CLIENTS:
        _refused(_run([client, "freeze", ckpt.directory, "-o", str(tmp_path / (name + ".pb"))], env), *words)
    served = _run([PY, "serve", "--local"], env)
    assert served.returncode == 1 and words[0] in served.stderr, served.stderr


def test_a_symlink_as_the_folder_is_refused(ckpt, tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    os.chmod(real, 0o700)
    (tmp_path / "cache").mkdir()
    os.symlink(str(real), str(tmp_path / "cache" / "local"))
    env = _victim_env(str(tmp_path / "cache"))
    words = "the local server's folder %s is a symbolic link (to %s" % (tmp_path / "cache" / "local", real)
    for name, client in CLIENTS:
        _refused(_run([client, "freeze", ckpt.directory, "-o", str(tmp_path / (name + ".pb"))], env), words)
    served = _run([PY, "serve", "--local"], env)
    assert served.returncode == 1 and words in served.stderr, served.stderr
    assert os.listdir(real) == []


def test_a_long_socket_path_never_uses_a_predictable_shared_folder(attacker, ckpt, tmp_path):
    """The folder's path is too long for a socket address: the socket goes to a random-named
    0700 folder of the victim's, so the old fallback /tmp/tffreeze-UID, made first by another
    user, no longer stops the victim's local server from starting."""
    predictable = "/tmp/tffreeze-%d" % os.geteuid()
    aside = None
    if os.path.lexists(predictable):
        aside = tempfile.mktemp(prefix="tffreeze-aside-", dir="/tmp")
        os.rename(predictable, aside)
    made = attacker.run(["mkdir", "-m", "0755", predictable], env=attacker.env())
    assert made.returncode == 0, made.stderr
    cache = str(tmp_path / ("a-long-folder-name-" * 5))
    env = _victim_env(cache)
    try:
        assert os.stat(predictable).st_uid == attacker.uid
        assert len(os.path.join(cache, "local", "grpc-4194304.sock")) > 100
        outs = {}
        for name, client in (("py", PY), ("cpp", CPP), ("cs", CS)):
            out = tmp_path / (name + ".pb")
            done = _run([client, "freeze", ckpt.directory, "-o", str(out)], env)
            assert done.returncode == 0, (name, done.stderr)
            outs[name] = out.read_bytes()
        assert outs["py"] == outs["cpp"] == outs["cs"]
        info = localserver.read_info(os.path.join(cache, "local"))
        socket = info["grpc"][len("unix:"):]
        sock_folder = os.path.dirname(socket)
        assert not socket.startswith(predictable + "/") and len(socket) <= 100
        assert os.path.dirname(sock_folder) == "/tmp" and os.path.basename(sock_folder).startswith("tffreeze-sock-")
        st = os.lstat(sock_folder)
        assert st.st_uid == os.geteuid() and st.st_mode & 0o7777 == 0o700
        assert os.listdir(predictable) == []  # the other user's folder was not used
        stopped = _run([PY, "local-server", "stop"], env)
        assert stopped.returncode == 0, stopped.stderr
        assert not os.path.exists(sock_folder)  # removed by the server as it stopped
    finally:
        _run([PY, "local-server", "stop"], env)
        shutil.rmtree(predictable, ignore_errors=True)
        if aside is not None:
            os.rename(aside, predictable)


def test_a_stale_socket_folder_of_a_killed_server_is_removed_and_a_foreign_one_refused(ckpt, tmp_path, attacker):
    """server.info names the socket; a socket outside the folder must lie in a 0700 folder of
    the user's own (not one another user made), and a killed server's is cleaned up."""
    cache = str(tmp_path / ("another-long-folder-name-" * 4))
    env = _victim_env(cache)
    try:
        started = _run([PY, "local-server", "start"], env)
        assert started.returncode == 0, started.stderr
        folder = os.path.join(cache, "local")
        info = localserver.read_info(folder)
        sock_folder = os.path.dirname(info["grpc"][len("unix:"):])
        # the socket's folder handed to another user: every client refuses it
        os.chown(sock_folder, attacker.uid, attacker.gid)
        words = "the local server's socket folder %s is not yours: it is owned by %s" % (sock_folder, attacker.name)
        for name, client in (("py", PY), ("cpp", CPP)):  # C# speaks gRPC-Web: it never uses the socket
            _refused(_run([client, "freeze", ckpt.directory, "-o", str(tmp_path / (name + ".pb"))], env), words)
        os.chown(sock_folder, os.geteuid(), os.getegid())
        # killed: its socket folder stays until the next start, which removes it
        pid = int(info["pid"])
        os.kill(pid, 9)
        deadline = time.monotonic() + 30
        while localserver.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.isdir(sock_folder)
        again = _run([PY, "local-server", "start"], env)
        assert again.returncode == 0, again.stderr
        assert not os.path.exists(sock_folder)
    finally:
        _run([PY, "local-server", "stop"], env)


def test_socket_folder_prefers_a_private_xdg_runtime_dir(tmp_path, monkeypatch, request):
    long_folder = str(tmp_path / ("x" * 100))
    runtime = tempfile.mkdtemp(prefix="run-", dir="/tmp")  # short: the socket's path must fit
    request.addfinalizer(lambda: shutil.rmtree(runtime, ignore_errors=True))
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime)
    path = localserver.socket_path(long_folder, 12345)
    assert os.path.dirname(os.path.dirname(path)) == runtime and path.endswith("/grpc-12345.sock")
    assert os.stat(os.path.dirname(path)).st_mode & 0o7777 == 0o700
    os.rmdir(os.path.dirname(path))
    os.chmod(runtime, 0o755)  # not private: not used
    path = localserver.socket_path(long_folder, 12345)
    assert os.path.dirname(os.path.dirname(path)) == "/tmp" and os.path.basename(os.path.dirname(path)).startswith(
        "tffreeze-sock-")
    os.rmdir(os.path.dirname(path))
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/tmp/" + "r" * 90)  # too long for a socket under it (and missing)
    path = localserver.socket_path(long_folder, 1)
    assert os.path.dirname(os.path.dirname(path)) == "/tmp"
    os.rmdir(os.path.dirname(path))
    assert localserver.socket_path(str(tmp_path), 7) == str(tmp_path / "grpc-7.sock")  # short: in the folder


@pytest.mark.parametrize("client", ["py", "cs", "cpp"])
def test_folders_a_client_makes_pass_its_own_check_under_umask_002(ckpt, tmp_path, client):
    """The third new-user trial: under umask 002 (usual with a group per user) the first call
    made ~/.cache/tffreeze group-writable (0775) and then refused it as "another user could
    change". The folders a client makes are 0755 at most whatever the umask; the call works."""
    cache = tmp_path / "home" / ".cache" / "tffreeze"
    env = _victim_env(str(cache))
    argv = {"py": [PY], "cs": [CS], "cpp": [CPP]}[client] + ["inspect", ckpt.directory]
    try:
        out = _run(argv, env, preexec_fn=lambda: os.umask(0o002))
        assert out.returncode == 0, out.stderr
        for folder in (tmp_path / "home", tmp_path / "home" / ".cache", cache):
            assert os.stat(folder).st_mode & 0o022 == 0, (folder, oct(os.stat(folder).st_mode))
    finally:
        _run([PY, "local-server", "stop"], env)
