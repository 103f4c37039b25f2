"""tffreeze run by an ordinary user (not root), with the real sandbox: the way nearly every
user runs it. Run as root (CI), these tests switch to a user made for them (``users``), in a
fresh login environment; run as an ordinary user, they are that user.

- ``tffreeze serve --sandbox bwrap`` as that user: freezes (plain, --verify, a TF2
  SavedModel), each in its own task sandbox, and the graphs run;
- the local server, started on demand by the user's first ``tffreeze freeze`` in their own
  ``~/.cache``, then used by the C# and C++ clients;
- the container image's user (uid 10001) running the image's ENTRYPOINT and HEALTHCHECK.

The sandbox must be there (bubblewrap): without it these tests would prove nothing, so they
fail rather than skip where ``TFFREEZE_REQUIRE_SANDBOX=1`` (CI)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import yaml

import models
import users
from conftest import BIN, start_server, stop_server
from test_container_command import DATA, _instruction
from test_parity import CPP, CS, built  # noqa: F401 - built: the C#/C++ clients, or a skip that says why

PY = os.path.join(BIN, "tffreeze")


@pytest.fixture(scope="module", autouse=True)
def bwrap():
    if shutil.which("bwrap") is None:
        why = "bubblewrap is not installed (make sandbox): an ordinary user's sandbox cannot be tried"
        if os.environ.get("TFFREEZE_REQUIRE_SANDBOX") == "1":
            pytest.fail(why + " -- TFFREEZE_REQUIRE_SANDBOX=1 forbids skipping")
        pytest.skip(why)


@pytest.fixture(scope="module")
def user():
    return users.ordinary()


@pytest.fixture(scope="module")
def work(user):
    """A folder of the user's with a TF1 checkpoint and a TF2 SavedModel in it."""
    folder = user.folder()
    dense = models.dense(os.path.join(folder, "dense"), True, steps=[10])
    saved = models.saved_model_v2(os.path.join(folder, "saved"))
    user.give(folder)
    yield {"folder": folder, "dense": dense, "saved": saved}
    shutil.rmtree(folder, ignore_errors=True)


def _check_runs(graph_path: str, manifest_path: str, model) -> None:
    with open(graph_path, "rb") as fh:
        graph = fh.read()
    with open(manifest_path) as fh:
        manifest = json.load(fh)
    feeds, expected = model.feeds, model.expected
    sig = manifest.get("signature")
    if sig:  # a TF2 SavedModel: its signature's argument names
        feeds = {sig["inputs"][a]["name"]: v for a, v in feeds.items()}
        expected = {sig["outputs"][a]["name"]: v for a, v in expected.items()}
    fetches = [t["name"] for t in manifest["outputs"]]
    got = models.run_frozen(graph, feeds, fetches)
    for name, want in expected.items():
        assert name in fetches, (name, fetches)
        np.testing.assert_allclose(got[fetches.index(name)], want, rtol=1e-5, atol=1e-6)


def test_serve_as_an_ordinary_user_runs_tasks_in_the_sandbox(user, work):
    data = user.folder("tffreeze-user-data-")
    env = user.env()
    srv = start_server(data, ["--sandbox", "bwrap"], wrapper=user.wrap(), env=env)
    try:
        out = work["folder"]
        for name, source, extra in (("plain", "dense", []), ("verified", "dense", ["--verify"]),
                                    ("tf2", "saved", [])):
            graph, manifest = os.path.join(out, name + ".pb"), os.path.join(out, name + ".json")
            done = user.run([PY, "freeze", work[source].directory, "--server", srv.target, "-o", graph,
                             "--manifest", manifest, *extra], env=env)
            assert done.returncode == 0, "%s: %s\nserver log:\n%s" % (name, done.stderr, "".join(srv.log[-30:]))
            _check_runs(graph, manifest, work[source])
            assert os.stat(graph).st_uid == user.uid  # written by the user's client
        log = "".join(srv.log)
        assert "WORKER_CRASHED" not in log and "malformed" not in log, log[-3000:]
        assert os.stat(os.path.join(data, "blobs")).st_uid == user.uid  # the store is the user's
    finally:
        assert stop_server(srv) == 0, "".join(srv.log[-40:])
    try:  # nothing of a task is left (the next task's folder, prepared ahead, goes at the stop)
        tasks = os.path.join(data, "tasks")
        assert not os.path.isdir(tasks) or os.listdir(tasks) == [], os.listdir(tasks)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_the_local_server_of_an_ordinary_user_serves_all_three_clients(user, work):
    """A fresh login shell with the venv's bin on PATH: no server started, no folder made."""
    env = user.env()
    local = os.path.join(user.home, ".cache", "tffreeze")
    shutil.rmtree(local, ignore_errors=True)
    out, ckpt = work["folder"], work["dense"].directory
    try:
        first = user.run([PY, "freeze", ckpt, "-o", os.path.join(out, "py.pb"), "--manifest",
                          os.path.join(out, "py.json")], env=env)
        log = os.path.join(local, "local", "server.log")
        assert first.returncode == 0, first.stderr + _tail(log)
        _check_runs(os.path.join(out, "py.pb"), os.path.join(out, "py.json"), work["dense"])
        folder = os.path.join(local, "local")
        assert os.stat(folder).st_uid == user.uid and os.stat(folder).st_mode & 0o077 == 0
        with open(os.path.join(folder, "server.info")) as fh:
            pid = dict(line.rstrip("\n").split(" ", 1) for line in fh)["pid"]
        with open("/proc/%s/status" % pid) as fh:
            assert "Uid:\t%d" % user.uid in fh.read()  # the server runs as the user, not root
        for client, name in ((CS, "cs"), (CPP, "cpp")):
            graph = os.path.join(out, name + ".pb")
            done = user.run([client, "freeze", ckpt, "-o", graph], env=env)
            assert done.returncode == 0, "%s: %s%s" % (name, done.stderr, _tail(log))
            with open(graph, "rb") as a, open(os.path.join(out, "py.pb"), "rb") as b:
                assert a.read() == b.read(), name
        with open(os.path.join(folder, "server.info")) as fh:
            assert dict(line.rstrip("\n").split(" ", 1) for line in fh)["pid"] == pid  # one server for all three
        with open(log) as fh:
            assert "WORKER_CRASHED" not in fh.read()
    finally:
        stopped = user.run([PY, "local-server", "stop"], env=env)
        assert stopped.returncode == 0, stopped.stderr


def _tail(path: str) -> str:
    try:
        with open(path) as fh:
            return "\nlocal server log:\n" + "".join(fh.readlines()[-30:])
    except OSError:
        return ""


def test_the_container_images_user_serves_with_the_sandbox(work):
    """The image's ENTRYPOINT, run as its USER (uid 10001) with its data folder, plus
    --sandbox bwrap (the image installs bubblewrap); a freeze through it, then the image's
    HEALTHCHECK command."""
    user = users.container_user()
    data = user.folder("tffreeze-10001-data-")
    entry = yaml.safe_load(_instruction("ENTRYPOINT"))
    assert entry[0] == "tffreeze-server"
    args = [a.replace(DATA, data) for a in entry[1:]]
    flags = dict(zip(args[::2], args[1::2]))
    env = user.env()
    srv = start_server(data, ["--host", flags["--host"], "--health-socket", flags["--health-socket"], "--insecure",
                              "--sandbox", "bwrap"], wrapper=user.wrap(), env=env,
                       command=[os.path.join(BIN, "tffreeze-server")])
    try:
        target = "127.0.0.1:" + srv.target.rsplit(":", 1)[1]
        graph = os.path.join(data, "container.pb")
        done = user.run([PY, "freeze", work["dense"].directory, "--server", target, "-o", graph, "--verify"], env=env)
        assert done.returncode == 0, done.stderr + "".join(srv.log[-30:])
        check = yaml.safe_load(_instruction("HEALTHCHECK").split("CMD", 1)[1])
        probe = user.run([os.path.join(BIN, "python")] + [a.replace(DATA, data) for a in check[1:]], env=env)
        assert probe.returncode == 0, probe.stderr
    finally:
        assert stop_server(srv) == 0, "".join(srv.log[-40:])
        shutil.rmtree(data, ignore_errors=True)


def test_a_checkpoint_file_the_user_may_not_read_is_named_the_same_way_by_every_client(user, work, web_server):
    """R3 of the sixth trial: a shard of mode 000 gave a raw OSError (Python), "Access to the
    path is denied [IO_ERROR]" (C#) and "cannot read ... [NOT_FOUND]" (C++). Each client now
    names the file, the category and the fix, in the same words. (Root reads any file: this
    needs the ordinary user.)"""
    folder = os.path.join(work["folder"], "unreadable")
    shutil.copytree(work["dense"].directory, folder)
    user.give(folder)
    shard = next(os.path.join(folder, n) for n in sorted(os.listdir(folder)) if ".data-" in n)
    os.chmod(shard, 0)
    port = web_server.target.rsplit(":", 1)[1]
    web = web_server.web_url
    lines = {}
    try:
        for client, argv in (("py", [PY, "freeze", folder, "--server", "127.0.0.1:" + port]),
                             ("cs", [CS, "freeze", folder, "--server", web]),
                             ("cpp", [CPP, "freeze", folder, "--server", "127.0.0.1:" + port])):
            done = user.run(argv + ["-o", os.path.join(work["folder"], "never.pb")])
            assert done.returncode == 1, (client, done.stdout, done.stderr)
            lines[client] = [l.split(": ", 1)[1] for l in done.stderr.splitlines() if l.startswith("tffreeze")][-1]
    finally:
        os.chmod(shard, 0o644)
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == ("cannot read %s: permission denied; make it readable (chmod u+r %s), or freeze a copy you "
                           "can read [PERMISSION_DENIED]" % (shard, shard)), lines["py"]
    if os.geteuid() != 0:
        return  # (the rest needs a file of another user: the tests run as root in CI, where it runs)
    # trial 8 R13: another user's file: chmod is not the user's to run; its owner is named instead
    os.chown(shard, 0, 0)
    os.chmod(shard, 0o600)
    try:
        for client, argv in (("py", [PY, "freeze", folder, "--server", "127.0.0.1:" + port]),
                             ("cs", [CS, "freeze", folder, "--server", web]),
                             ("cpp", [CPP, "freeze", folder, "--server", "127.0.0.1:" + port])):
            done = user.run(argv + ["-o", os.path.join(work["folder"], "never.pb")])
            assert done.returncode == 1, (client, done.stdout, done.stderr)
            lines[client] = [l.split(": ", 1)[1] for l in done.stderr.splitlines() if l.startswith("tffreeze")][-1]
    finally:
        os.chmod(shard, 0o644)
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == ("cannot read %s: permission denied; it belongs to another user, root (uid 0): ask them to "
                           "make it readable, or freeze a copy you can read [PERMISSION_DENIED]" % shard), lines["py"]


def test_a_state_file_the_user_may_not_read_is_said_the_same_way_by_every_client(user, work, web_server):
    """Trial 11 (ROUGH 10): a `checkpoint` state file of mode 000 was skipped without a word by
    C++ (which then chose a checkpoint itself), a raw "[Errno 13]" in Python, an exception in C#.
    Freezing the folder needs it (it names the latest checkpoint): refused with the fix. A
    checkpoint named as SOURCE needs none: frozen."""
    folder = os.path.join(work["folder"], "nostate")
    shutil.copytree(work["dense"].directory, folder)
    user.give(folder)
    state = os.path.join(folder, "checkpoint")
    os.chmod(state, 0)
    port = web_server.target.rsplit(":", 1)[1]
    lines = {}
    prefix = os.path.join(folder, work["dense"].prefix)
    try:
        for client, argv in (("py", [PY, "freeze", "--server", "127.0.0.1:" + port]),
                             ("cs", [CS, "freeze", "--server", web_server.web_url]),
                             ("cpp", [CPP, "freeze", "--server", "127.0.0.1:" + port])):
            done = user.run(argv + [folder, "-o", os.path.join(work["folder"], "never.pb")])
            assert done.returncode == 1, (client, done.stdout, done.stderr)
            lines[client] = [l.split(": ", 1)[1] for l in done.stderr.splitlines() if l.startswith("tffreeze")][-1]
            named = user.run(argv + [prefix, "-o", os.path.join(work["folder"], client + "-named.pb")])
            assert named.returncode == 0, (client, named.stderr)
    finally:
        os.chmod(state, 0o644)
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == ("cannot read %s: permission denied; make it readable (chmod u+r %s), or freeze a copy you "
                           "can read. It is the state file that names the latest checkpoint; a checkpoint named by "
                           "its prefix (%s) needs none [PERMISSION_DENIED]" % (state, state, os.path.join(folder, "PREFIX"))
                           ), lines["py"]


def test_a_checkpoint_folder_the_user_may_not_list_is_named_the_same_way_by_every_client(user, work, web_server):
    """Trial 8 M6: a colleague's folder (mode 0700, another owner) holding a whole checkpoint was
    "no checkpoint found ... (0 files)" in Python and C++, "Access to the path is denied
    [IO_ERROR]" in C#. Each client now says it cannot list it, and the fix."""
    folder = os.path.join(work["folder"], "colleague")
    shutil.copytree(work["dense"].directory, folder)  # as root: root's, which the user may not list at 0700
    os.chmod(folder, 0o700 if os.geteuid() == 0 else 0o000)  # (as the user itself: its own folder at 0000)
    port = web_server.target.rsplit(":", 1)[1]
    lines = {}
    try:
        for client, argv in (("py", [PY, "freeze", folder, "--server", "127.0.0.1:" + port]),
                             ("cs", [CS, "freeze", folder, "--server", web_server.web_url]),
                             ("cpp", [CPP, "freeze", folder, "--server", "127.0.0.1:" + port])):
            done = user.run(argv + ["-o", os.path.join(work["folder"], "never.pb")])
            assert done.returncode == 1, (client, done.stdout, done.stderr)
            lines[client] = [l.split(": ", 1)[1] for l in done.stderr.splitlines() if l.startswith("tffreeze")][-1]
    finally:
        os.chmod(folder, 0o700)
        shutil.rmtree(folder, ignore_errors=True)
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    if os.geteuid() == 0:
        assert lines["py"] == ("cannot list %s: permission denied; it belongs to another user, root (uid 0): ask them "
                               "to make it readable, or freeze a copy you can read [PERMISSION_DENIED]" % folder), lines
    else:
        assert lines["py"] == ("cannot list %s: permission denied; make it readable (chmod u+rx %s), or freeze a copy "
                               "you can read [PERMISSION_DENIED]" % (folder, folder)), lines["py"]
