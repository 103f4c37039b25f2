"""Issue 34, findings 1 and 8: the local server's store never jams, and the local server says
whose it is.

- A local server with a small store (64 MiB) is filled with checkpoints of ~20 MB through
  the Python, C# (gRPC-Web, resumable uploads) and C++ clients; freezing another still works
  (the least recently used are evicted); a checkpoint larger than the store is refused with a
  fix the user can type (`tffreeze local-server start --max-store-bytes`,
  $TFFREEZE_LOCAL_STORE_BYTES); `local-server clean` empties it and says how much it freed;
  `status` shows the store's size and use.
- `status` shows the installation; `start --idle-exit` on a running server with other
  options says so and how to restart; the first call on a terminal says it starts the
  server; a reader that leaves (`| head`) gets no broken-pipe trace.

Each test has a cache folder of its own (so its own local server), stopped at the end."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

import models  # noqa: F401 - TensorFlow quiet, as the other tests have it
from conftest import on_a_terminal
from test_parity import CPP, CS, PY, built  # noqa: F401 - built: the C#/C++ clients, or a skip that says why

from tffreeze_api import localserver

tf = models.tf
tf1 = models.tf1
MB = 1 << 20


def big_checkpoint(directory: str, seed: int, megabytes: int = 20) -> str:
    """A checkpoint whose data file holds ``megabytes`` of random floats (the .meta stays
    small: the variable is initialised by a random op, not a constant); y = x * sum(w)."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None], name="x")
        w = tf1.get_variable("w", [megabytes * MB // 4], initializer=tf1.random_normal_initializer(seed=seed),
                             use_resource=False)
        tf.multiply(x, tf.reduce_sum(w), name="y")
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            saver.save(sess, os.path.join(directory, "model.ckpt"))
    return directory


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("big")
    return [big_checkpoint(str(root / ("c%d" % i)), seed=i) for i in range(5)]


@pytest.fixture()
def own_cache(tmp_path):
    env = dict(os.environ, TFFREEZE_CACHE_DIR=str(tmp_path / "cache"), TFFREEZE_COMMAND=PY)
    for name in ("TFFREEZE_SERVER", "TFFREEZE_WEB_SERVER", "TFFREEZE_LOCAL_STORE_BYTES"):
        env.pop(name, None)
    yield env
    subprocess.run([PY, "local-server", "stop"], env=env, capture_output=True, timeout=120)


def _run(argv, env, **kw):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, **kw)


def _folder(env) -> str:
    return os.path.join(env["TFFREEZE_CACHE_DIR"], "local")


def _info(env) -> dict:
    return localserver.read_info(_folder(env)) or {}


def _store_bytes(env) -> int:
    total = 0
    for root, _, files in os.walk(os.path.join(_folder(env), "data", "blobs")):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def test_a_small_store_filled_by_every_client_still_freezes_and_refuses_what_cannot_fit(own_cache, checkpoints,
                                                                                      tmp_path):
    start = _run([PY, "local-server", "start", "--max-store-bytes", "64M"], own_cache)
    assert start.returncode == 0, start.stderr
    assert _info(own_cache)["store-bytes"] == str(64 * MB)
    clients = [("py", [PY]), ("cs", [CS]), ("cpp", [CPP]), ("py", [PY]), ("cs", [CS])]
    sizes = []
    for (name, argv), ckpt in zip(clients, checkpoints):  # 5 x (20 MB in + 20 MB out) through a 64 MiB store
        out = _run(argv + ["freeze", ckpt, "-o", str(tmp_path / (os.path.basename(ckpt) + ".pb"))], own_cache)
        assert out.returncode == 0, (name, out.stderr)
        sizes.append(_store_bytes(own_cache))
        assert sizes[-1] <= 64 * MB
    # the first checkpoint again (long since evicted) from each client: re-uploaded, frozen, same bytes
    first = (tmp_path / "c0.pb").read_bytes()
    for name, argv in (("cpp", [CPP]), ("cs", [CS]), ("py", [PY])):
        out = _run(argv + ["freeze", checkpoints[0], "-o", str(tmp_path / ("again-%s.pb" % name))], own_cache)
        assert out.returncode == 0, (name, out.stderr)
        assert (tmp_path / ("again-%s.pb" % name)).read_bytes() == first

    # larger than the whole store: refused with the fix, from every client
    huge = big_checkpoint(str(tmp_path / "huge"), seed=9, megabytes=70)
    for name, argv in (("py", [PY]), ("cs", [CS]), ("cpp", [CPP])):
        out = _run(argv + ["freeze", huge, "-o", str(tmp_path / "huge.pb")], own_cache)
        assert out.returncode == 1, (name, out.stdout, out.stderr)
        words = " ".join(out.stderr.split())
        assert "STORE_FULL" in words or "RESOURCE_EXHAUSTED" in words, (name, words)
        assert "tffreeze local-server start --max-store-bytes" in words, (name, words)
        assert "TFFREEZE_LOCAL_STORE_BYTES" in words and "local-server clean" in words, (name, words)
        assert not (tmp_path / "huge.pb").exists()
        print("%s: %s" % (name, words))

    status = _run([PY, "local-server", "status"], own_cache)
    assert status.returncode == 0
    assert re.search(r"store\s+[\d.]+ MiB used of 64\.0 MiB", status.stdout), status.stdout

    # the fix, as the message gives it: a larger store, then the same freeze works
    grown = _run([PY, "local-server", "start", "--max-store-bytes", "256M"], own_cache)
    assert grown.returncode == 1  # (its options were not applied)
    assert "already running" in grown.stderr and "--max-store-bytes 64M, not 256M" in grown.stderr
    assert "tffreeze local-server stop && tffreeze local-server start --max-store-bytes 256M" in grown.stderr
    assert _run([PY, "local-server", "stop"], own_cache).returncode == 0
    env = dict(own_cache, TFFREEZE_LOCAL_STORE_BYTES="256M")
    out = _run([CS, "freeze", huge, "-o", str(tmp_path / "huge.pb")], env)  # C# starts it through `tffreeze`
    assert out.returncode == 0, out.stderr
    assert _info(own_cache)["store-bytes"] == str(256 * MB)

    used = _store_bytes(own_cache)
    assert used > 70 * MB
    clean = _run([PY, "local-server", "clean"], own_cache)
    assert clean.returncode == 0, clean.stderr
    assert "stopped the local server" in clean.stdout and "freed" in clean.stdout, clean.stdout
    freed = float(re.search(r"freed ([\d.]+) MiB", clean.stdout).group(1))
    assert freed * MB >= used * 0.99  # printed with one decimal
    assert not os.path.exists(os.path.join(_folder(own_cache), "data"))
    assert _run([PY, "local-server", "status"], own_cache).returncode == 3
    again = _run([PY, "local-server", "clean"], own_cache)
    assert again.returncode == 0 and "freed 0 bytes" in again.stdout


def test_status_names_the_installation_and_start_says_when_options_differ(own_cache):
    assert _run([PY, "local-server", "start"], own_cache).returncode == 0
    info = _info(own_cache)
    here = os.path.dirname(os.path.dirname(os.path.realpath(
        __import__("importlib").util.find_spec("tffreeze_server").origin)))
    assert info["installation"] == here
    status = _run([PY, "local-server", "status"], own_cache)
    assert "installation %s" % here in " ".join(status.stdout.split())
    assert re.search(r"store\s+.* used of 4\.0 GiB", status.stdout), status.stdout

    again = _run([PY, "local-server", "start", "--idle-exit", "7200"], own_cache)
    assert again.returncode == 1  # (trial 10, 14: a script sees that its options were not applied)
    words = " ".join(again.stderr.split())
    assert "already running" in words and "with other options: --idle-exit 1800, not 7200" in words, words
    assert "Your options were not applied" in words and "pid" in again.stdout, (words, again.stdout)
    assert "tffreeze local-server stop && tffreeze local-server start --idle-exit 7200" in words
    assert _run([PY, "local-server", "start", "--idle-exit", "1800"], own_cache).stdout.startswith(
        "the local server is already running\n")

    # a server of another installation (server.info says so): used, and said so
    folder = _folder(own_cache)
    text = open(os.path.join(folder, "server.info")).read().replace("installation %s" % here,
                                                                     "installation /elsewhere/server")
    localserver.write_info(folder, dict(line.split(" ", 1) for line in text.splitlines()))
    status = _run([PY, "local-server", "status"], own_cache)
    assert "another installation's; this one is %s" % here in status.stdout
    stop = _run([PY, "local-server", "stop"], own_cache)
    assert "of another installation, /elsewhere/server" in stop.stdout


def test_the_first_call_on_a_terminal_says_it_starts_the_server(own_cache, tmp_path):
    model = models.dense(str(tmp_path / "m"), True)
    shown = on_a_terminal([PY, "freeze", model.directory, "-o", str(tmp_path / "m.pb")], env=own_cache)
    assert "starting your local server (a few seconds, once)" in shown
    shown = on_a_terminal([PY, "freeze", model.directory, "-o", str(tmp_path / "n.pb")], env=own_cache)
    assert "starting your local server" not in shown  # warm: nothing to say
    piped = _run([PY, "local-server", "stop"], own_cache)
    out = _run([PY, "freeze", model.directory, "-o", str(tmp_path / "o.pb")], own_cache)  # not a terminal
    assert out.returncode == 0 and "starting" not in out.stderr and piped.returncode == 0


@pytest.mark.parametrize("argv", [["local-server", "status"], ["local-server", "--help"], ["--help"],
                                  ["local-server", "clean"]])
def test_no_broken_pipe_trace_when_the_reader_leaves(own_cache, argv):
    read, write = os.pipe()
    os.close(read)  # the reader (`| head`) is gone before anything is written
    proc = subprocess.run([PY] + argv, env=own_cache, stdout=write, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(write)
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert "BrokenPipeError" not in proc.stderr
    assert np.isin(proc.returncode, [0, 3, 141]), proc.returncode


# -- the store's rules, without a server ---------------------------------------------------
def _digest(data: bytes):
    import hashlib

    return hashlib.sha256(data).hexdigest(), len(data)


def _resumable(store, data: bytes, upload_id: str = "u"):
    sha, size = _digest(data)
    return store.write_chunk(sha, size, 0, data, True, upload_id=upload_id)


def test_the_local_store_evicts_recently_used_blobs_for_a_resumable_upload(tmp_path):
    """The shared store keeps blobs used within the partial TTL from a resumable upload (another
    client may need them); the local store has no other user: the least recently used go."""
    from tffreeze_server.blobstore import BlobStore
    from tffreeze_server.core.errors import ResourceExhausted

    old = [os.urandom(300) for _ in range(3)]
    new = os.urandom(500)
    shared = BlobStore(str(tmp_path / "shared"), max_bytes=1000)
    for b in old:
        _resumable(shared, b)
    with pytest.raises(ResourceExhausted, match="recently used blobs"):
        _resumable(shared, new)
    local = BlobStore(str(tmp_path / "local"), max_bytes=1000, local=True)
    for i, b in enumerate(old):
        _resumable(local, b)
        os.utime(local.path(_digest(b)[0]), (2000 + i, 2000 + i))
    assert _resumable(local, new) == (500, True)
    assert local.missing([_digest(b) for b in old]) == [_digest(old[0]), _digest(old[1])]  # the two oldest went
    with pytest.raises(ResourceExhausted) as err:  # larger than the store: the fix names the local-server options
        _resumable(local, os.urandom(1001))
    assert "tffreeze local-server start --max-store-bytes" in err.value.message
    assert "TFFREEZE_LOCAL_STORE_BYTES" in err.value.message and "local-server clean" in err.value.message


def test_a_freezes_own_files_are_never_evicted_for_each_other(tmp_path):
    """A freeze needs all its files at once: making room for one of them never evicts another
    (that would loop); files that cannot all fit are refused up front, naming their total."""
    from tffreeze_server.blobstore import BlobStore
    from tffreeze_server.core.errors import ResourceExhausted

    store = BlobStore(str(tmp_path), max_bytes=1000, local=True)
    a, b = os.urandom(400), os.urandom(400)
    other = os.urandom(300)
    _resumable(store, other)
    assert store.missing([_digest(a), _digest(b)]) == [_digest(a), _digest(b)]  # one freeze's files
    _resumable(store, a)
    os.utime(store.path(_digest(a)[0]), (1000, 1000))  # older than `other`, still this freeze's
    _resumable(store, b)
    assert store.missing([_digest(a), _digest(b)]) == []  # `other` went, not a
    assert store.missing([_digest(other)]) == [_digest(other)]
    c, d = os.urandom(600), os.urandom(600)
    assert len(store.missing([_digest(c), _digest(d)])) == 2
    with pytest.raises(ResourceExhausted, match="this freeze's 2 files total 1.2 KiB"):
        store.write_stream(*_digest(c), iter([(0, c)]))
    assert store.missing([_digest(a), _digest(b)]) == []  # nothing was evicted for it


def test_the_local_store_discards_an_interrupted_upload_for_room(tmp_path):
    """A resumable upload left by an interrupted freeze reserves its size until it expires (an
    hour); the local store discards it when room is needed, not one written to just now."""
    from tffreeze_server import blobstore
    from tffreeze_server.blobstore import BlobStore
    from tffreeze_server.core.errors import ResourceExhausted

    store = BlobStore(str(tmp_path), max_bytes=1000, local=True)
    store.write_chunk("ab" * 32, 800, 0, b"x", False, upload_id="interrupted")
    with pytest.raises(ResourceExhausted, match="uploads in progress"):
        _resumable(store, os.urandom(500), upload_id="next")
    part = os.path.join(store.root, "partial", os.listdir(os.path.join(store.root, "partial"))[0])
    os.utime(part, (os.path.getmtime(part) - blobstore.ACTIVE_UPLOAD_SECONDS - 1,) * 2)
    assert _resumable(store, os.urandom(500), upload_id="next") == (500, True)
    assert os.listdir(os.path.join(store.root, "partial")) == []


def test_an_interrupted_upload_goes_before_a_stored_checkpoint_and_is_never_said_in_progress(tmp_path):
    """Trial 13 (F05): interrupted C# uploads kept reserving their size beside the stored blobs:
    the partial and the new file fitted without the blobs, so nothing was discarded, the blobs
    could not be evicted past the reservation, and the refusal called minutes-old partials
    "uploads in progress (written to within 30 s)"."""
    from tffreeze_server import blobstore
    from tffreeze_server.blobstore import BlobStore

    store = BlobStore(str(tmp_path), max_bytes=1000, local=True)
    kept = os.urandom(400)
    store.write_stream(*_digest(kept), iter([(0, kept)]))
    store.write_chunk("cd" * 32, 450, 0, b"x", False, upload_id="interrupted")
    part = os.path.join(store.root, "partial", os.listdir(os.path.join(store.root, "partial"))[0])
    os.utime(part, (os.path.getmtime(part) - blobstore.ACTIVE_UPLOAD_SECONDS - 1,) * 2)
    assert _resumable(store, os.urandom(500), upload_id="next") == (500, True)
    assert os.listdir(os.path.join(store.root, "partial")) == []
    assert store.missing([_digest(kept)]) == []  # the stored checkpoint stays: the stale partial went


def test_a_second_checkout_of_the_same_version_is_named_not_silent(own_cache, tmp_path):
    """Two installations of one version: the second's client says it uses the first's server,
    `status` and `stop` say whose server it is, and once stopped the next call starts its own."""
    import importlib.util
    import shutil

    here = os.path.dirname(os.path.dirname(os.path.realpath(importlib.util.find_spec("tffreeze_server").origin)))
    other = os.path.realpath(str(tmp_path / "checkout2" / "server"))
    shutil.copytree(os.path.join(here, "tffreeze_server"), os.path.join(other, "tffreeze_server"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    theirs = dict(own_cache, PYTHONPATH=other)  # the second checkout's code comes first
    assert _run([PY, "local-server", "start"], theirs).returncode == 0
    assert _info(own_cache)["installation"] == other
    status = _run([PY, "local-server", "status"], own_cache)
    assert "installation %s" % other in " ".join(status.stdout.split())
    assert "another installation's; this one is %s" % here in status.stdout
    model = models.dense(str(tmp_path / "m"), True)
    out = _run([PY, "freeze", model.directory, "-o", str(tmp_path / "m.pb")], own_cache)
    assert out.returncode == 0, out.stderr
    words = " ".join(out.stderr.split())
    assert "is another installation's: %s" % other in words and "this one is %s" % here in words, words
    same = _run([PY, "freeze", model.directory, "-o", str(tmp_path / "n.pb")], theirs)
    assert same.returncode == 0 and "another installation" not in same.stderr  # its own server: nothing to say
    stop = _run([PY, "local-server", "stop"], own_cache)
    assert "of another installation, %s" % other in stop.stdout
    out = _run([PY, "freeze", model.directory, "-o", str(tmp_path / "o.pb")], own_cache)
    assert out.returncode == 0 and "another installation" not in out.stderr
    assert _info(own_cache)["installation"] == here  # this checkout's own server now


def test_a_running_tasks_staged_inputs_are_not_evicted(tmp_path):
    """A blob hard-linked into a task's input folder is in use (and evicting it would free
    nothing): the next least recently used goes instead."""
    from tffreeze_server.blobstore import BlobStore

    store = BlobStore(str(tmp_path), max_bytes=1000, local=True)
    staged, idle = os.urandom(400), os.urandom(400)
    for i, b in enumerate((staged, idle)):
        _resumable(store, b)
        os.utime(store.path(_digest(b)[0]), (1000 + i, 1000 + i))
    os.makedirs(os.path.join(store.tasks_dir, "t1", "in"))
    store.link_into(_digest(staged)[0], os.path.join(store.tasks_dir, "t1", "in", "model.ckpt.data"))
    os.utime(store.path(_digest(staged)[0]), (1000, 1000))  # the oldest, but staged
    _resumable(store, os.urandom(400))
    assert store.missing([_digest(staged)]) == [] and store.missing([_digest(idle)]) == [_digest(idle)]


def test_store_sizes_are_read_as_people_write_them(own_cache, tmp_path):
    from tffreeze_server.settings import parse_bytes

    assert [parse_bytes(t) for t in ("4294967296", "4G", "4GiB", "512M", "1.5G", "64 MiB")] == [
        4 << 30, 4 << 30, 4 << 30, 512 << 20, 3 << 29, 64 << 20]
    for bad in ("", "G", "0", "-1G", "12X", "four"):
        with pytest.raises(ValueError):
            parse_bytes(bad)
    out = _run([PY, "local-server", "start", "--max-store-bytes", "12X"], own_cache)
    assert out.returncode == 2 and "--max-store-bytes: '12X' is not a size" in out.stderr
    env = dict(own_cache, TFFREEZE_LOCAL_STORE_BYTES="lots")
    out = _run([PY, "local-server", "start"], env)
    assert out.returncode == 1 and "$TFFREEZE_LOCAL_STORE_BYTES: 'lots' is not a size" in out.stderr, out.stderr


def test_the_local_server_has_one_worker_and_the_readme_says_how_to_have_more(own_cache):
    """One worker: a small freeze waits behind a long one. The README says so where it describes
    the local server, with the command that gives it more workers, and that command does."""
    with open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "README.md"), encoding="utf-8") as fh:
        readme = " ".join(fh.read().split())
    section = readme[readme.index("## The local server"):readme.index("## Which runtime?")]
    assert "It runs **one TensorFlow worker**, so calls take turns" in section, section[:400]
    assert "`tffreeze local-server stop && tffreeze local-server start --workers 2`" in section
    start = _run([PY, "local-server", "start"], own_cache)
    assert start.returncode == 0 and _info(own_cache)["workers"] == "1", start.stderr
    assert _run([PY, "local-server", "stop"], own_cache).returncode == 0
    more = _run([PY, "local-server", "start", "--workers", "2"], own_cache)
    assert more.returncode == 0 and _info(own_cache)["workers"] == "2", more.stderr
    assert re.search(r"workers\s+2\b", more.stdout), more.stdout
