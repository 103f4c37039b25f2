"""The local server as every client meets it (Python, tffreeze-cs, tffreeze-cpp):

- a local server of another installation (checkout) of the same version serves the call, and
  each client says so on stderr in the same words;
- `tffreeze local-server stop` while a freeze is uploading: the calls in flight finish, and the
  freeze goes on with a new local server (as after the server is killed) instead of failing.

Each test has a cache folder of its own (so its own local server), stopped at the end."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import time

import pytest

import models
from test_parity import CPP, CS, PY, built, _stderr  # noqa: F401 - built: the C#/C++ clients, or a skip that says why

from tffreeze_api import localserver

CLIENTS = {"py": PY, "cs": CS, "cpp": CPP}


@pytest.fixture()
def own_cache(tmp_path):
    env = dict(os.environ, TFFREEZE_CACHE_DIR=str(tmp_path / "cache"), TFFREEZE_COMMAND=PY)
    for name in ("TFFREEZE_SERVER", "TFFREEZE_WEB_SERVER", "TFFREEZE_LOCAL_STORE_BYTES"):
        env.pop(name, None)
    yield env
    subprocess.run([PY, "local-server", "stop"], env=env, capture_output=True, timeout=120)


def _run(argv, env):
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def _info(env) -> dict:
    return localserver.read_info(os.path.join(env["TFFREEZE_CACHE_DIR"], "local")) or {}


def test_every_client_says_the_local_server_is_another_installations(own_cache, tmp_path):
    here = os.path.dirname(os.path.dirname(os.path.realpath(importlib.util.find_spec("tffreeze_server").origin)))
    other = os.path.realpath(str(tmp_path / "checkout2" / "server"))
    shutil.copytree(os.path.join(here, "tffreeze_server"), os.path.join(other, "tffreeze_server"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    theirs = dict(own_cache, PYTHONPATH=other)  # the second checkout's code comes first
    assert _run([PY, "local-server", "start"], theirs).returncode == 0
    assert _info(own_cache)["installation"] == other
    model = models.dense(str(tmp_path / "m"), True)
    notes = {}
    for name, binary in CLIENTS.items():
        out = _run([binary, "freeze", model.directory, "-o", str(tmp_path / (name + ".pb"))], own_cache)
        assert out.returncode == 0, (name, out.stderr)
        notes[name] = _stderr(out.stderr)
        words = " ".join(out.stderr.split())
        assert "note: the local server running (pid %s) is another installation's: %s" % (
            _info(own_cache)["pid"], other) in words, (name, words)
        assert "this one is %s" % here in words and "`tffreeze local-server stop`" in words, (name, words)
    assert notes["cs"] == notes["py"] and notes["cpp"] == notes["py"], notes
    for name, binary in CLIENTS.items():  # the second checkout's clients use their own server: nothing to say
        out = _run([binary, "freeze", model.directory, "-o", str(tmp_path / (name + "2.pb"))], theirs)
        assert out.returncode == 0 and "another installation" not in out.stderr, (name, out.stderr)


def _big_checkpoint(directory: str, megabytes: int) -> str:
    """A checkpoint whose data file holds ``megabytes`` of random floats; y = x * sum(w)."""
    tf, tf1 = models.tf, models.tf1
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None], name="x")
        w = tf1.get_variable("w", [megabytes * (1 << 20) // 4], initializer=tf1.random_normal_initializer(seed=7),
                             use_resource=False)
        tf.multiply(x, tf.reduce_sum(w), name="y")
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))
    return directory


def _uploading(env) -> bool:
    """Whether the local server's store holds an upload in progress."""
    data = os.path.join(env["TFFREEZE_CACHE_DIR"], "local", "data")
    for sub in ("tmp", "partial"):
        try:
            if any(os.path.getsize(os.path.join(data, sub, n)) > 0 for n in os.listdir(os.path.join(data, sub))):
                return True
        except OSError:
            pass
    return False


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_local_server_stop_during_an_upload_lets_the_freeze_finish(own_cache, tmp_path, client):
    """`tffreeze local-server stop` while a freeze uploads: the stopping server finishes the command
    under way (its upload, then its freeze) before it exits, or, when that outlasts its drain, the
    freeze goes on with a new local server and says so; either way the graph is the one a quiet
    freeze gives."""
    model = _big_checkpoint(str(tmp_path / "big"), 400)
    assert _run([PY, "local-server", "start"], own_cache).returncode == 0
    first = _info(own_cache)["pid"]
    out = str(tmp_path / "big.pb")
    freeze = subprocess.Popen([CLIENTS[client], "freeze", model, "-o", out], env=own_cache,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not _uploading(own_cache) and freeze.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert freeze.poll() is None, "the freeze ended before its upload was seen: %s" % freeze.communicate()[1]
    stop = _run([PY, "local-server", "stop"], own_cache)
    assert stop.returncode == 0 and "stopped the local server (pid %s)" % first in stop.stdout, stop.stdout
    stdout, stderr = freeze.communicate(timeout=600)
    assert freeze.returncode == 0, stderr
    moved = "note: the local server (pid %s) stopped during this command; it goes on with a new local server" % first
    if moved in stderr:
        assert _info(own_cache)["pid"] != first  # a new one served the rest
    else:  # finished by the stopping server, which then exited
        assert "stopped during this command" not in stderr, stderr
        assert _info(own_cache).get("pid") != first
    again = str(tmp_path / "again.pb")
    quiet = _run([PY, "freeze", model, "-o", again], own_cache)
    assert quiet.returncode == 0, quiet.stderr
    assert open(out, "rb").read() == open(again, "rb").read()
