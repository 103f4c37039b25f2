"""Issue 34, the Python `tffreeze` command: flags mean what they say (finding 3), no
leftovers after SIGTERM or SIGHUP (4), messages name what the user typed (6), OS errors
worded with the path, the flag and the fix, and outputs checked before anything is
written (7). Every check runs the real command against a real server."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

import clashes
import models
from conftest import start_server, stop_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TFFREEZE = os.path.join(os.path.dirname(sys.executable), "tffreeze")
sys.path.insert(0, os.path.join(ROOT, "bench"))


def cli(*args, env=None, timeout=300):
    full = dict(os.environ, **(env or {}))
    full.pop("TFFREEZE_SERVER", None)
    return subprocess.run([TFFREEZE, *args], capture_output=True, text=True, env=full, timeout=timeout)


def parts(folder) -> list:
    return sorted(n for n in os.listdir(folder) if n.endswith(".part"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return models.dense(str(tmp_path_factory.mktemp("first-week") / "run"), True)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(str(tmp_path_factory.mktemp("first-week-data")))
    yield s
    stop_server(s)


# -- finding 3: flags mean what they say ------------------------------------------------

def _parsers():
    from tffreeze.cli import _commands, _flags, build_parser

    commands = _commands(build_parser())
    return {name: _flags(p) for name, p in commands.items()}


def _foreign(into: str, of: str):
    flags = _parsers()
    return sorted((f, flags[of][f].nargs != 0) for f in flags[of] if f not in flags[into])


@pytest.mark.parametrize("flag,takes_value", _foreign("freeze", "run"))
def test_a_flag_of_run_given_to_freeze_is_a_usage_error(tmp_path, flag, takes_value):
    out = tmp_path / "b.pb"
    r = cli("freeze", "v1", "-o", str(out), "--server", "127.0.0.1:1", flag, *(["pred"] if takes_value else []))
    assert r.returncode == 2, r.stderr
    assert "%s" % flag in r.stderr and "is a flag of `tffreeze run`" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == [] and not os.path.exists("pred")


@pytest.mark.parametrize("flag,takes_value", _foreign("run", "freeze"))
def test_a_flag_of_freeze_given_to_run_is_a_usage_error(tmp_path, flag, takes_value):
    npy = tmp_path / "y.npy"
    r = cli("run", str(tmp_path / "m.pb"), "--output", "y=%s" % npy, flag,
            *([str(tmp_path / "v")] if takes_value else []))
    assert r.returncode == 2, r.stderr
    assert flag in r.stderr and "is a flag of `tffreeze freeze`" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


def test_the_reported_output_flag_writes_nothing(srv, ckpt, tmp_path):
    """`tffreeze freeze v1 -o b.pb --output pred` wrote `pred` and exited 0."""
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "b.pb"), "--output", str(tmp_path / "pred"),
            "--server", srv.target)
    assert r.returncode == 2
    assert ("--output NAME[=FILE.npy] is a flag of `tffreeze run`; freeze writes its graph with -o/--output-file"
            in r.stderr), r.stderr
    assert os.listdir(tmp_path) == []
    ok = cli("freeze", ckpt.directory, "--output-file", str(tmp_path / "b.pb"), "--server", srv.target, "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert os.listdir(tmp_path) == ["b.pb"]


@pytest.mark.parametrize("args", [
    ["freeze", "SRC", "-o", "OUT", "--manif", "M"],
    ["freeze", "SRC", "--output-f", "OUT"],
    ["freeze", "SRC", "-o", "OUT", "--opt"],
    ["inspect", "SRC", "--js"],
    ["run", "OUT", "--out", "y=N"],
    ["run", "OUT", "--man", "M", "--output", "y=N"],
])
def test_abbreviations_are_refused(srv, ckpt, tmp_path, args):
    subst = {"SRC": ckpt.directory, "OUT": str(tmp_path / "o.pb"), "M": str(tmp_path / "m.json"),
             "y=N": "y=%s" % (tmp_path / "y.npy")}
    r = cli(*[subst.get(a, a) for a in args], *(["--server", srv.target] if args[0] != "run" else []))
    assert r.returncode == 2, r.stderr
    assert "flags are written in full" in r.stderr or "unknown option" in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []


# -- finding 4: no leftovers -----------------------------------------------------------

@pytest.fixture(scope="module")
def big_ckpt(tmp_path_factory):
    from freeze_vs_anchor import make_checkpoint

    folder = str(tmp_path_factory.mktemp("first-week-big") / "ckpt")
    make_checkpoint(folder, 160)  # a 160 MiB variable: its graph takes a while to write
    return folder


def _signal_while_writing(srv, source, folder, sig):
    """Run a freeze into ``folder`` and send ``sig`` while its .part file is being written
    (the process is stopped while it is looked at, so the file cannot be finished in
    between). (exit code, stderr), or None when the freeze finished before a .part was seen."""
    out = os.path.join(folder, "big.pb")
    env = dict(os.environ, TFFREEZE_CACHE_DIR=tempfile.mkdtemp(prefix="first-week-cache-"))
    env.pop("TFFREEZE_SERVER", None)
    proc = subprocess.Popen([TFFREEZE, "freeze", source, "-o", out, "--server", srv.target],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            seen = [n for n in parts(folder) if n.startswith(".big.pb.")]
            if seen:
                proc.send_signal(signal.SIGSTOP)
                still = [n for n in seen if os.path.exists(os.path.join(folder, n))
                         and os.path.getsize(os.path.join(folder, n)) > 0]
                if still:
                    proc.send_signal(sig)
                    proc.send_signal(signal.SIGCONT)
                    _, err = proc.communicate(timeout=300)
                    return proc.returncode, err
                proc.send_signal(signal.SIGCONT)
            time.sleep(0.002)
        proc.communicate(timeout=300)
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(env["TFFREEZE_CACHE_DIR"], ignore_errors=True)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_mid_write_leaves_nothing(srv, big_ckpt, tmp_path, sig, code):
    for attempt in range(4):
        folder = tmp_path / ("try%d" % attempt)
        folder.mkdir()
        got = _signal_while_writing(srv, big_ckpt, str(folder), sig)
        if got is None:
            continue  # finished before its .part was seen: again
        rc, err = got
        assert rc == code, err
        assert "stopped by %s" % signal.Signals(sig).name in err, err
        assert parts(folder) == [] and not (folder / "big.pb").exists(), os.listdir(folder)
        return
    pytest.fail("the freeze never had its .part file in progress when looked at")


def _gone_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_the_next_freeze_removes_stale_parts(srv, ckpt, tmp_path):
    dead, old = _gone_pid(), time.time() - 120
    planted = {
        ".out.pb.%d-abcdefgh.part" % dead: False,   # its writer is gone: stale
        ".out.pb.k3j4l5m6.part": False,             # no pid (an older tffreeze), unchanged for 2 minutes
        ".out.pb.n7o8p9q0.part": True,              # no pid, just written: maybe a live writer's
        ".out.pb.%d-rstuvwxy.part" % os.getpid(): True,  # a live writer (a concurrent freeze)
        ".other.pb.%d-abcdefgh.part" % dead: True,  # another output's
        ".out.pb.%d-abcdefgh.tmp" % dead: True,     # not tffreeze's naming
        ".m.json.%d-zzzzzzzz.part" % dead: False,   # the manifest's, its writer gone
    }
    for name in planted:
        (tmp_path / name).write_bytes(b"x" * 100)
    for name in (".out.pb.k3j4l5m6.part",):
        os.utime(tmp_path / name, (old, old))
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "out.pb"), "--manifest", str(tmp_path / "m.json"),
            "--server", srv.target, "--quiet")
    assert r.returncode == 0, r.stderr
    left = set(os.listdir(tmp_path))
    for name, kept in planted.items():
        assert (name in left) == kept, (name, sorted(left))
    assert {"out.pb", "m.json"} <= left


# -- finding 7: OS errors worded, outputs checked first --------------------------------

def test_a_folder_as_output_is_refused_before_anything_is_written(srv, ckpt, tmp_path):
    (tmp_path / "ro").mkdir()
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "ro"), "--manifest", str(tmp_path / "m.json"),
            "--server", srv.target)
    assert r.returncode == 1
    assert "-o %s is a folder: give a file name" % (tmp_path / "ro") in r.stderr, r.stderr
    assert "Errno" not in r.stderr
    assert sorted(os.listdir(tmp_path)) == ["ro"] and os.listdir(tmp_path / "ro") == []
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "ok.pb"), "--manifest", str(tmp_path / "ro"),
            "--server", srv.target)
    assert r.returncode == 1 and "--manifest %s is a folder" % (tmp_path / "ro") in r.stderr, r.stderr
    assert sorted(os.listdir(tmp_path)) == ["ro"]


def _in_private_mounts(script: str, *args) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) in a private mount namespace (root only)."""
    env = dict(os.environ)
    env.pop("TFFREEZE_SERVER", None)
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_a_read_only_manifest_folder_refuses_before_the_graph_is_written(srv, ckpt, tmp_path):
    ro = tmp_path / "manifests"
    ro.mkdir()
    out = tmp_path / "ok.pb"
    args = ["freeze", ckpt.directory, "-o", str(out), "--manifest", str(ro / "m.json"), "--server", srv.target]
    if os.geteuid() == 0:  # root writes in any folder: make it a read-only mount
        r = _in_private_mounts('mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"',
                               str(ro), TFFREEZE, *args)
        expected = "--manifest %s: %s is on a read-only filesystem: give --manifest another path" % (ro / "m.json", ro)
    else:
        ro.chmod(0o555)
        r = cli(*args)
        expected = "--manifest %s: you may not write in %s" % (ro / "m.json", ro)
    assert r.returncode == 1, r.stderr
    assert expected in r.stderr, r.stderr
    assert "(-o)" not in r.stderr and "Errno" not in r.stderr
    assert not out.exists() and parts(tmp_path) == [] and os.listdir(ro) == []


@pytest.fixture(scope="module")
def mib_ckpt(tmp_path_factory):
    from freeze_vs_anchor import make_checkpoint

    folder = str(tmp_path_factory.mktemp("first-week-mib") / "ckpt")
    make_checkpoint(folder, 2)  # a 2 MiB graph: more than the small disk holds
    return folder


def test_a_full_disk_names_the_path_and_the_flag(srv, mib_ckpt, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("a small tmpfs (a full disk) can only be mounted as root (unshare -m, mount -t tmpfs)")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = disk / "out.pb"
    cache = tempfile.mkdtemp(prefix="first-week-cache-")  # no results cache to link from
    try:
        r = _in_private_mounts(
            'mount -t tmpfs -o size=64k tmpfs "$1" || exit 99; d=$1; shift; '
            'TFFREEZE_CACHE_DIR=%s "$@"; rc=$?; echo "left: $(ls -A "$d")"; exit $rc' % cache,
            str(disk), TFFREEZE, "freeze", mib_ckpt, "-o", str(out), "--server", srv.target, "--quiet")
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "-o %s: no space left for the graph in %s (the disk is full)" % (out, disk) in r.stderr, r.stderr
    assert "Errno" not in r.stderr
    assert "left: \n" in r.stdout or r.stdout.rstrip().endswith("left:"), r.stdout


# -- finding 6: messages name what the user typed ---------------------------------------

def test_a_bad_manifest_folder_names_manifest(srv, ckpt, tmp_path):
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "ok.pb"), "--manifest", str(tmp_path / "no" / "m.json"),
            "--server", srv.target)
    assert r.returncode == 1
    assert ("--manifest %s: the folder %s does not exist: create it, or give --manifest another path"
            % (tmp_path / "no" / "m.json", tmp_path / "no")) in r.stderr, r.stderr
    assert "(-o)" not in r.stderr and os.listdir(tmp_path) == []


def test_a_missing_graph_is_named_as_the_graph_flag(srv, tmp_path):
    m = models.without_meta(str(tmp_path / "run"), True, False)
    r = cli("freeze", m.directory, "-o", str(tmp_path / "o.pb"), "--server", srv.target)
    assert r.returncode == 1
    assert "name it with --graph FILE" in r.stderr and "graph_path" not in r.stderr, r.stderr


def test_several_checkpoint_folders_name_the_command_to_type(srv, ckpt, tmp_path):
    for sub in ("a", "b"):
        shutil.copytree(ckpt.directory, str(tmp_path / "runs" / sub))
    runs = str(tmp_path / "runs")
    r = cli("freeze", runs, "-o", str(tmp_path / "o.pb"), "--server", srv.target)
    assert r.returncode == 1
    assert "%s holds no checkpoint itself" % runs in r.stderr, r.stderr
    assert "e.g. `tffreeze freeze %s`" % os.path.join(runs, "a") in r.stderr, r.stderr
    assert "SOURCE" not in r.stderr


def test_an_option_that_does_not_apply_is_named_as_its_flag(srv, tmp_path):
    m = models.saved_model_v2(str(tmp_path / "sm"))
    r = cli("freeze", m.directory, "-o", str(tmp_path / "o.pb"), "--bind", "x=1", "--server", srv.target)
    assert r.returncode == 1
    assert "--bind does not apply to a TF2 SavedModel" in r.stderr, r.stderr
    assert "options." not in r.stderr


def test_the_outputs_note_is_a_sentence_of_its_own():
    from tffreeze.cli import _message
    from tffreeze.errors import error_for

    exc = error_for("FAILED_PRECONDITION", "options.target: op Foo is not in TensorFlow 1.15 [outputs: logits:0 "
                    "(the signature's output), pred:0 (the signature's output)]",
                    metadata={"field": "options.target", "outputs": "logits:0,pred:0"})
    msg = _message(exc)
    assert msg == "--target: op Foo is not in TensorFlow 1.15", msg


def test_the_outputs_note_via_the_command(srv, ckpt, tmp_path):
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "o.pb"), "--input-shape", "x=1,3",
            "--input-shape", "nope=2", "--server", srv.target)
    assert r.returncode == 1
    # The fix is --input-shape (the message lists the inputs): no note about outputs beside it.
    first, *rest = r.stderr.splitlines()
    assert first.startswith("tffreeze freeze: --input-shape: nope is not an input") and "[outputs:" not in first, first
    assert "its inputs: x " in first and "the outputs it chose" not in r.stderr, r.stderr
    assert os.listdir(tmp_path) == []
    # A failure the outputs explain (they need a variable the checkpoint lacks) does carry the note.
    partial = models.partial_save(str(tmp_path / "partial"))
    r = cli("freeze", partial.directory, "-o", str(tmp_path / "o.pb"), "--server", srv.target)
    assert r.returncode == 1
    first, *rest = r.stderr.splitlines()
    assert "b (checkpoint key 'b')" in first and "[outputs:" not in first, first
    assert rest and rest[0].startswith("the outputs it chose (nothing was frozen): y:0 (") and rest[0].endswith(
        "to freeze others, name them: --outputs a,b"), r.stderr
    assert sorted(os.listdir(tmp_path)) == ["partial"]


def test_a_folder_as_run_output_is_refused_before_the_graph_runs(srv, ckpt, tmp_path):
    import numpy as np

    pb = tmp_path / "m.pb"
    assert cli("freeze", ckpt.directory, "-o", str(pb), "--server", srv.target, "--quiet").returncode == 0
    np.save(str(tmp_path / "x.npy"), np.ones((2, 3), np.float32))
    (tmp_path / "out").mkdir()
    r = cli("run", str(pb), "--input", "x=%s" % (tmp_path / "x.npy"), "--output", "y=%s" % (tmp_path / "out"))
    assert r.returncode == 1
    assert "--output y=%s is a folder: give a file name" % (tmp_path / "out") in r.stderr, r.stderr
    assert os.listdir(tmp_path / "out") == [] and parts(tmp_path) == []


# -- the new-user trial: outputs never written over what is being frozen -------------------


@pytest.mark.parametrize("suffix", [".index", ".meta", ".data-00000-of-00001"])
def test_o_naming_a_file_of_the_checkpoint_is_refused_and_it_stays(ckpt, srv, tmp_path, suffix):
    copy = str(tmp_path / "run")
    shutil.copytree(ckpt.directory, copy)
    before = clashes.folder_hashes(copy)
    victim = next(n for n in sorted(os.listdir(copy)) if n.endswith(suffix))
    out = cli("freeze", copy, "--server", srv.target, "-o", os.path.join(copy, victim))
    assert out.returncode == 2, out.stderr
    assert "is a file of the checkpoint being frozen (%s): give the graph another path" % victim in out.stderr
    assert clashes.folder_hashes(copy) == before
    manifest = cli("freeze", copy, "--server", srv.target, "-o", str(tmp_path / "m.pb"), "--manifest",
                   os.path.join(copy, victim))
    assert manifest.returncode == 2 and "give the manifest another path" in manifest.stderr, manifest.stderr
    assert clashes.folder_hashes(copy) == before and not (tmp_path / "m.pb").exists()


def test_the_manifest_on_the_graphs_own_path_is_refused(ckpt, srv, tmp_path):
    out = cli("freeze", ckpt.directory, "--server", srv.target, "-o", str(tmp_path / "keep.pb"), "--manifest",
              os.path.join(str(tmp_path), ".", "keep.pb"))
    assert out.returncode == 2 and "is the graph's own path" in out.stderr, out.stderr
    assert not (tmp_path / "keep.pb").exists()


def test_a_cpp_clients_leftover_is_removed_when_unlocked_and_kept_while_locked(ckpt, srv, tmp_path):
    """C++ names its temporary files .NAME.XXXXXX.part (no pid) and locks them while writing."""
    import fcntl

    out_pb = tmp_path / "g.pb"
    stale, held = tmp_path / ".g.pb.SKQ4Sg.part", tmp_path / ".g.pb.Ab3dE9.part"
    for p in (stale, held):
        p.write_bytes(b"x" * 100)
        os.utime(p, (time.time() - 120, time.time() - 120))
    with open(held, "rb") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # a live C++ writer
        done = cli("freeze", ckpt.directory, "--server", srv.target, "-o", str(out_pb))
        assert done.returncode == 0, done.stderr
        assert not stale.exists() and held.exists()


def test_a_graph_written_into_the_checkpoint_folder_can_be_written_again(ckpt, srv, tmp_path):
    copy = str(tmp_path / "run")
    shutil.copytree(ckpt.directory, copy)
    before = clashes.folder_hashes(copy)
    for _ in range(2):  # the second time, the first graph is in SOURCE: it is not a checkpoint file
        out = cli("freeze", copy, "--server", srv.target, "-o", os.path.join(copy, "frozen.pb"))
        assert out.returncode == 0, out.stderr
    after = clashes.folder_hashes(copy)
    assert {k: v for k, v in after.items() if k != "frozen.pb"} == before


def test_inspect_of_a_saved_models_variables_folder_points_to_the_saved_model(srv, tmp_path):
    models.saved_model_v1(str(tmp_path / "sm"))
    r = cli("inspect", str(tmp_path / "sm" / "variables"), "--server", srv.target)
    assert r.returncode == 0, r.stderr
    assert "warning: this folder holds a checkpoint named 'variables' and no graph, as the variables/ folder inside " \
           "a SavedModel does: give the SavedModel's folder (the one holding saved_model.pb) instead" in r.stdout, r.stdout


@pytest.mark.parametrize("flag,value,said", [
    ("--step", "abc", "--step takes a global step (an integer), got 'abc'"),
    ("--timeout", "abc", "--timeout takes seconds, e.g. --timeout 300 (got 'abc')"),
])
def test_a_bad_flag_value_is_said_once_as_the_other_clients_say_it(ckpt, tmp_path, flag, value, said):
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "o.pb"), flag, value)
    assert r.returncode == 2
    assert r.stderr.splitlines() == ["tffreeze freeze: " + said, "(see tffreeze --help)"], r.stderr
    assert os.listdir(tmp_path) == []


def test_an_unusable_cache_dir_names_the_variable_and_the_fix(tmp_path):
    """R5 of the sixth trial: $TFFREEZE_CACHE_DIR at a folder that cannot be made said
    "[Errno 13] ... Pass --server (or $TFFREEZE_SERVER)": neither the variable that chose the
    folder nor a fix that works from C#. (/proc takes no folder, even from root.)"""
    ckpt = models.dense(str(tmp_path / "ckpt"), True)
    env = dict(os.environ, TFFREEZE_CACHE_DIR="/proc/tffreeze-no-such-cache")
    env.pop("TFFREEZE_SERVER", None)
    done = subprocess.run([TFFREEZE, "inspect", ckpt.directory], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 1, done.stderr
    assert ("cannot use the local server's folder /proc/tffreeze-no-such-cache/local (from $TFFREEZE_CACHE_DIR) "
            "(No such file or directory: /proc/tffreeze-no-such-cache): set $TFFREEZE_CACHE_DIR to a folder you can "
            "write, or pass --server to use a running server [UNAVAILABLE]") in done.stderr, done.stderr
    assert "Errno" not in done.stderr and "TFFREEZE_SERVER" not in done.stderr


@pytest.mark.parametrize("existed", [True, False])
def test_a_manifest_that_cannot_be_written_leaves_the_graph_as_it_was(server, tmp_path, monkeypatch, capsys, existed):
    """Trial 8 M2: the manifest's disk full after OUT.pb was replaced: exit 1, a new graph beside
    the old manifest, and a message about the manifest only. Both are written or neither: the old
    graph is put back (or the new one removed), and the message says so."""
    import errno

    from tffreeze import cli, client as client_module

    first = models.dense(str(tmp_path / "first"), True)
    second = models.dense(str(tmp_path / "second"), True, steps=[3, 7], mutate=True)
    out, manifest = tmp_path / "m.pb", tmp_path / "m.json"
    if existed:
        assert cli.main(["freeze", first.directory, "-o", str(out), "--manifest", str(manifest),
                         "--server", server.target]) == 0
    before = out.read_bytes() if existed else None
    other = tmp_path / "other.pb"
    assert cli.main(["freeze", second.directory, "-o", str(other), "--server", server.target]) == 0
    assert other.read_bytes() != before  # (the second freeze would replace the graph)
    real = client_module.write_atomically

    def full_disk(path, data):
        if os.path.abspath(path) == str(manifest):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, data)
    monkeypatch.setattr(client_module, "write_atomically", full_disk)
    capsys.readouterr()
    assert cli.main(["freeze", second.directory, "-o", str(out), "--manifest", str(manifest),
                     "--server", server.target]) == 1
    err = capsys.readouterr().err
    if existed:
        assert out.read_bytes() == before, "the old graph is back"
        assert "is as it was: nothing was written" in err, err
    else:
        assert not out.exists() and "(nothing was written)" in err, err
    assert "no space left for the manifest" in err and not parts(str(tmp_path)), (err, parts(str(tmp_path)))
