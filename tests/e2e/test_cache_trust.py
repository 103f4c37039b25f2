"""The clients' caches are trusted only as far as they are checked (issue 32).

Beside the local server's folder, $TFFREEZE_CACHE_DIR holds the clients' digest caches
(digests.json, digests-cs.tsv, digests-cpp.tsv: a file's path and stat -> its sha256, so an
unchanged file is not hashed again) and the Python client's received-graph cache (results/:
graphs received earlier, copied out as a freeze's output). In a shared folder (mode 1777)
another user could plant digests that map the victim's checkpoint files to the digests of
their own checkpoint's blobs (already on the server: the victim's freeze would then freeze
the attacker's weights), and a fake graph under the name of the victim's result.

Every client checks the cache folder (the local server folder's rules: the folders above it,
then it: this user's, not writable by group or others, not a symbolic link) and each cache
file (O_NOFOLLOW, this user's, not writable by others) before reading it; when a check fails
the cache is not used (files are hashed, the graph downloaded) and one warning line names the
folder, why, and the fix. The victim's output is the right graph; nothing planted is used, and
nothing is written into the shared folder.

A cached graph is also checked against the sha256 the server reported as it is copied out: a
damaged (or planted) entry in the victim's own cache, even with a digest-cache entry vouching
for it, is never output.

The attacker is ``users.ordinary(SECOND)`` (only where the tests run as root); the victim is
the test's own user (root in CI) or ``users.ordinary()``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import models
import users
from test_parity import CPP, CS, PY, built  # noqa: F401 - built: the C#/C++ clients, or a skip that says why

CLIENTS = ("py", "cs", "cpp")
_TICKS_AT_EPOCH = 621355968000000000  # .NET ticks (100 ns) at 1970-01-01, as Mono's LastWriteTimeUtc counts


@pytest.fixture(scope="module")
def attacker():
    return users.ordinary(users.SECOND)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import start_server, stop_server

    server = start_server(str(tmp_path_factory.mktemp("cache-trust-data")), ["--web-port", "0"])
    server.web_url = next(re.search(r"gRPC-Web on (http://\S+?)\)", ln).group(1) for ln in server.log
                          if "gRPC-Web on" in ln)
    yield server
    assert stop_server(server) == 0


def _argv(client: str, server, source: str, out: str) -> list:
    if client == "py":
        return [PY, "freeze", source, "-o", out, "--server", server.target]
    if client == "cs":
        return [CS, "freeze", source, "-o", out, "--server", server.web_url]
    return [CPP, "freeze", source, "-o", out, "--server", server.target]


def _run(argv, env, wrap=()):
    return subprocess.run(list(wrap) + argv, env=env, capture_output=True, text=True, timeout=300)


def _env(cache: str, **extra) -> dict:
    env = dict(os.environ, TFFREEZE_CACHE_DIR=cache, **extra)
    for name in ("TFFREEZE_SERVER", "TFFREEZE_WEB_SERVER", "XDG_RUNTIME_DIR"):
        env.pop(name, None)
    return env


def _sha(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def _old(directory: str) -> None:
    """Files older than the clients' 2 s racy window, as a checkpoint usually is: their digests
    are remembered (and a planted entry for them would be believed)."""
    past = os.stat(directory).st_mtime - 3600
    for name in os.listdir(directory):
        os.utime(os.path.join(directory, name), (past, past))


@pytest.fixture(scope="module")
def graphs(srv, tmp_path_factory):
    """The attacker's checkpoint (same model, other weights), frozen once so that its blobs are
    on the server; its files' digests and its frozen graph."""
    base = tmp_path_factory.mktemp("attackers-model")
    theirs = models.dense(str(base / "run"), True, steps=[1, 100], mutate=True).directory
    out = str(base / "theirs.pb")
    done = _run(_argv("py", srv, theirs, out), _env(str(base / "attackers-cache")))
    assert done.returncode == 0, done.stderr
    digests = {name: (_sha(os.path.join(theirs, name)), os.path.getsize(os.path.join(theirs, name)))
               for name in os.listdir(theirs)}
    with open(out, "rb") as fh:
        return {"digests": digests, "graph": fh.read()}


def _victim_model(victim: str, tmp_path):
    """(wrap, env maker, model folder, output folder, cleanup) for the victim."""
    if victim == "me":
        source = models.dense(str(tmp_path / "run"), True, steps=[100]).directory
        _old(source)
        return [], _env, source, str(tmp_path), lambda: None
    me = users.ordinary()
    out_dir = me.folder("tffreeze-victim-")
    source = models.dense(os.path.join(out_dir, "run"), True, steps=[100]).directory
    _old(source)
    me.give(out_dir)
    return me.wrap(), (lambda cache: me.env(TFFREEZE_CACHE_DIR=cache)), source, out_dir, \
        (lambda: shutil.rmtree(out_dir, ignore_errors=True))


def _plant(folder: str, source: str, graphs: dict, right_sha: str, right_size: int, owner=None) -> dict:
    """The attacker's entries in ``folder``: each client's digest cache mapping the victim's
    files (at their current stat) to the attacker's blobs, a fake graph at results/<the right
    sha256> (the attacker's graph, at the right size) and a digest entry vouching for it.
    Files are 0644 (folders 0755), owned by ``owner`` (a User) or by the test's user."""
    py, cs, cpp = {}, [], []
    for name in sorted(os.listdir(source)):
        path = os.path.join(source, name)
        st = os.stat(path)
        wrong, size = graphs["digests"].get(name, (None, None))
        if wrong is None or size != st.st_size:  # the .meta differs (the attacker's has assign ops): uploaded
            continue
        py[os.path.realpath(path)] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns, wrong]
        cs.append("%s\t%d\t%d:%d:%d:%d.%d\t%s\n" % (wrong, st.st_size, _TICKS_AT_EPOCH + st.st_mtime_ns // 100, st.st_ino,
                                                  st.st_dev, st.st_ctime_ns // 10**9, st.st_ctime_ns % 10**9,
                                                  os.path.abspath(path)))
        cpp.append("%s\t%d\t%d\t%d\t%d\t%d\t%s\n" % (wrong, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev,
                                                      st.st_ctime_ns, os.path.realpath(path)))
    assert len(py) >= 2, os.listdir(source)  # .index, .data: the weights
    fake = (graphs["graph"] + b"\0" * right_size)[:right_size]
    assert hashlib.sha256(fake).hexdigest() != right_sha
    results = os.path.join(folder, "results")
    os.makedirs(results, exist_ok=True)
    os.chmod(results, 0o755)
    entry = os.path.join(results, right_sha)
    with open(entry, "wb") as fh:
        fh.write(fake)
    st = os.stat(entry)
    py[os.path.realpath(entry)] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns, right_sha]  # "right"
    made = {os.path.join(folder, "digests.json"): json.dumps(py), os.path.join(folder, "digests-cs.tsv"): "".join(cs),
            os.path.join(folder, "digests-cpp.tsv"): "".join(cpp)}
    for path, text in made.items():
        with open(path, "w") as fh:
            fh.write(text)
    planted = list(made) + [entry]
    for path in planted + [results]:
        os.chmod(path, 0o755 if path == results else 0o644)
        if owner is not None:
            os.chown(path, owner.uid, owner.gid)
    return {path: (os.stat(path).st_mtime_ns, open(path, "rb").read() if os.path.isfile(path) else None)
            for path in planted}


def _tree(folder: str) -> list:
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, dirs, files in os.walk(folder)
                  for n in dirs + files)


@pytest.mark.parametrize("victim", ["me", "ordinary"])
def test_digests_and_a_fake_graph_planted_in_a_shared_cache_folder_are_not_used(attacker, srv, graphs, tmp_path,
                                                                                victim):
    wrap, env_for, source, out_dir, cleanup = _victim_model(victim, tmp_path)
    shared = tempfile.mkdtemp(prefix="tffreeze-shared-", dir="/tmp")  # root's, like /srv/shared
    os.chmod(shared, 0o1777)
    try:
        # The right graph: a freeze with a clean private cache of the victim's.
        private = os.path.join(out_dir, "private-cache")
        right_path = os.path.join(out_dir, "right.pb")
        done = _run(_argv("py", srv, source, right_path), env_for(private), wrap)
        assert done.returncode == 0, done.stderr
        with open(right_path, "rb") as fh:
            right = fh.read()
        assert right != graphs["graph"] and len(right) == len(graphs["graph"])  # same model, other weights
        planted = _plant(shared, source, graphs, hashlib.sha256(right).hexdigest(), len(right), owner=attacker)
        before = _tree(shared)
        me = os.geteuid() if victim == "me" else users.ordinary().uid
        why = ("the cache folder %s is writable by other users (mode 1777, owner root (uid 0))" % shared
               if me == 0 else "the cache folder %s is not yours: it is owned by root (uid 0), mode 1777" % shared)
        for client in CLIENTS:
            out = os.path.join(out_dir, client + ".pb")
            done = _run(_argv(client, srv, source, out), env_for(shared), wrap)
            assert done.returncode == 0, (client, done.stderr)
            with open(out, "rb") as fh:
                assert fh.read() == right, client  # not the attacker's graph, not the fake
            warnings = [ln for ln in done.stderr.splitlines() if "warning" in ln]
            assert len(warnings) == 1, (client, done.stderr)
            assert warnings[0].startswith("tffreeze%s: warning: the cache is not used: " %
                                          ("" if client == "py" else "-" + client)), warnings
            for words in (why, "TFFREEZE_CACHE_DIR at a folder of your own"):
                assert words in warnings[0], (client, warnings[0])
            assert "results cache" not in done.stdout + done.stderr  # the graph was not taken from the cache
        # nothing planted was changed, nothing of the victim's written there
        assert _tree(shared) == before
        for path, (mtime, data) in planted.items():
            assert os.stat(path).st_mtime_ns == mtime and os.stat(path).st_uid == attacker.uid
            with open(path, "rb") as fh:
                assert fh.read() == data
    finally:
        shutil.rmtree(shared, ignore_errors=True)
        cleanup()


def _source_and_right_graph(srv, tmp_path):
    """The victim's checkpoint and its graph as a freeze with a clean private cache gives it."""
    source = models.dense(str(tmp_path / "run"), True, steps=[100]).directory
    _old(source)
    right_path = str(tmp_path / "right.pb")
    assert _run(_argv("py", srv, source, right_path), _env(str(tmp_path / "clean"))).returncode == 0
    with open(right_path, "rb") as fh:
        return source, fh.read()


def test_the_same_plants_in_the_victims_own_cache_would_be_used(srv, graphs, tmp_path):
    """Control: the planted entries are well formed. The same files, made by the victim in
    their own cache folder (trusted: one's own cache is believed), are used by every client:
    the victim's weights are claimed under the digests of the attacker's (already on the
    server), and the attacker's weights are frozen. So in the shared folder it is the checks
    that kept them out."""
    source, right = _source_and_right_graph(srv, tmp_path)
    own = str(tmp_path / "own")
    os.mkdir(own, 0o700)
    _plant(own, source, graphs, hashlib.sha256(right).hexdigest(), len(right))
    for client in CLIENTS:
        out = str(tmp_path / (client + ".pb"))
        done = _run(_argv(client, srv, source, out), _env(own))
        assert done.returncode == 0, (client, done.stderr)
        assert "warning" not in done.stderr, done.stderr
        with open(out, "rb") as fh:
            assert fh.read() != right, client  # the planted digests were believed
        if client == "py":
            with open(out, "rb") as fh:
                wrong = fh.read()
        else:
            with open(out, "rb") as fh:
                assert fh.read() == wrong, client


def test_a_wrong_graph_in_my_own_results_cache_is_never_output(srv, tmp_path):
    """A graph in the victim's own results cache whose bytes do not match its name (damaged,
    or planted along with a digest-cache entry vouching for it) is never copied out: the graph
    is downloaded, and the entry replaced by the right one."""
    source = models.dense(str(tmp_path / "run"), True, steps=[100]).directory
    cache = str(tmp_path / "cache")
    env = _env(cache)
    first = str(tmp_path / "first.pb")
    done = _run(_argv("py", srv, source, first), env)
    assert done.returncode == 0, done.stderr
    with open(first, "rb") as fh:
        right = fh.read()
    sha = hashlib.sha256(right).hexdigest()
    entry = os.path.join(cache, "results", sha)
    # the cache and what this client wrote there: this user's alone
    assert os.stat(cache).st_mode & 0o777 == 0o700 and os.stat(os.path.dirname(entry)).st_mode & 0o777 == 0o700
    for path in (entry, os.path.join(cache, "digests.json")):
        st = os.lstat(path)
        assert st.st_uid == os.geteuid() and st.st_mode & 0o777 == 0o600, (path, oct(st.st_mode))
    again = str(tmp_path / "again.pb")
    done = _run(_argv("py", srv, source, again), env)
    assert "taken from the local results cache" in done.stdout + done.stderr, done  # the cache is used when right
    fake = bytes(reversed(right))
    with open(entry, "wb") as fh:
        fh.write(fake)
    st = os.stat(entry)
    with open(os.path.join(cache, "digests.json")) as fh:
        table = json.load(fh)
    table[os.path.realpath(entry)] = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns, sha]  # vouches
    with open(os.path.join(cache, "digests.json"), "w") as fh:
        json.dump(table, fh)
    third = str(tmp_path / "third.pb")
    done = _run(_argv("py", srv, source, third), env)
    assert done.returncode == 0, done.stderr
    assert "taken from the local results cache" not in done.stdout + done.stderr and "warning" not in done.stderr
    with open(third, "rb") as fh:
        assert fh.read() == right
    with open(entry, "rb") as fh:
        assert fh.read() == right  # the fake was dropped, the received graph kept in its place


@pytest.mark.parametrize("case", ["digests-a-symlink", "digests-of-another-user", "digests-group-writable",
                                  "folder-a-symlink", "folder-in-another-users-folder"])
def test_my_cache_with_something_others_could_write_is_not_used(attacker, srv, graphs, tmp_path, case):
    """One's own cache folder, with one thing in or around it another user could have
    written: each client warns (naming it, why and the fix), hashes afresh, outputs the right
    graph."""
    source, right = _source_and_right_graph(srv, tmp_path)
    cache = str(tmp_path / "cache")
    os.mkdir(cache, 0o700)
    _plant(cache, source, graphs, hashlib.sha256(right).hexdigest(), len(right))
    files = [os.path.join(cache, n) for n in ("digests.json", "digests-cs.tsv", "digests-cpp.tsv")]
    above = None
    if case == "digests-a-symlink":
        for path in files:
            os.rename(path, path + ".real")
            os.symlink(path + ".real", path)
        words = ["in the cache folder, is a symbolic link"]
    elif case == "digests-of-another-user":
        for path in files:
            os.chown(path, attacker.uid, attacker.gid)
        words = ["in the cache folder, is owned by %s (uid %d)" % (attacker.name, attacker.uid)]
    elif case == "digests-group-writable":
        for path in files:
            os.chmod(path, 0o664)
        words = ["in the cache folder, is writable by other users (mode 0664"]
    elif case == "folder-a-symlink":
        os.rename(cache, cache + ".real")
        os.symlink(cache + ".real", cache)
        words = ["the cache folder %s is a symbolic link (to %s.real" % (cache, cache)]
    else:
        above = attacker.folder("tffreeze-above-")
        os.chmod(above, 0o755)
        shutil.move(cache, os.path.join(above, "cache"))
        cache = os.path.join(above, "cache")
        words = ["the cache folder %s lies in %s (owner %s (uid %d)" % (cache, above, attacker.name, attacker.uid)]
    try:
        for client in CLIENTS:
            out = str(tmp_path / (client + ".pb"))
            done = _run(_argv(client, srv, source, out), _env(cache))
            assert done.returncode == 0, (client, done.stderr)
            with open(out, "rb") as fh:
                assert fh.read() == right, client
            warnings = [ln for ln in done.stderr.splitlines() if "warning" in ln]
            assert len(warnings) == 1 and "folder of your own" in warnings[0], (client, done.stderr)
            for w in words:
                assert w in warnings[0], (client, w, warnings[0])
    finally:
        if above is not None:
            shutil.rmtree(above, ignore_errors=True)
