"""tffreeze-cs after a first week of use (issue 34, the C# client's part of findings 3, 4, 5, 7
and 10), against a real server's gRPC-Web endpoint:

- 3: every flag of `run` given to `freeze`, and the reverse, is a usage error (exit 2) that
  names the flag and the command taking it, and writes nothing; no flag is abbreviated. The
  flags come from the CLI's own table (`tffreeze-cs flags COMMAND`), each also in --help;
- 4: SIGTERM and SIGHUP in the middle of writing the graph leave no temporary file (exit 143,
  129); stale temporary files of a killed writer are removed by the next freeze of the output,
  a live writer's are not;
- 5: from a plain shell (PATH=/usr/bin:/bin, no $TFFREEZE_COMMAND) `freeze` starts the local
  server with the checkout's .venv/bin/tffreeze;
- 7: -o naming a folder, and a --manifest folder that cannot be written, are refused before
  anything is written or uploaded, naming the path, the flag and the fix;
- 1 (trial): -o or --manifest naming a file of the checkpoint being frozen (its .index, .data,
  .meta) is a usage error before anything is uploaded or written; the checkpoint is unchanged;
  a graph an earlier freeze wrote into the checkpoint's folder is replaced (frozen twice, exit 0);
- the reader of stdout gone (`tffreeze-cs --help | head -1`) ends the process quietly, no trace;
- 10: `run model.onnx` says where an ONNX model runs (exit 1, as in C++); `run --manifest` without
  --output prints every output as the Python client does; the freeze summary has Python's
  "bound", "verify" and "format" lines."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

import clashes
import models
import users
from conftest import BIN

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CS = os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")
PY = os.path.join(BIN, "tffreeze")


@pytest.fixture(scope="module", autouse=True)
def built():
    if not os.path.exists(CS):
        subprocess.run(["make", "-s", "-C", ROOT, "csharp"], check=True)


def cs(*args, env=None, **kw):
    return subprocess.run([CS, *args], capture_output=True, text=True, timeout=600, env=env, **kw)


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    return models.dense(str(tmp_path_factory.mktemp("dense") / "ckpt"), True)


@pytest.fixture(scope="module")
def frozen(dense, web_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("frozen")
    done = cs("freeze", dense.directory, "--server", web_server.web_url, "-o", str(out / "m.pb"),
              "--manifest", str(out / "m.json"))
    assert done.returncode == 0, done.stderr
    return out


def _flags(command):
    """The flags `command` takes, from the parser's own table: {name: value placeholder or None}."""
    out = cs("flags", command)
    assert out.returncode == 0, out.stderr
    flags = {}
    for line in out.stdout.splitlines():
        name, _, value = line.partition(" ")
        flags[name] = value or None
    assert flags, command
    return flags


def _written(folder):
    return sorted(n for n in os.listdir(folder))


# -- 3: flags mean what they say ---------------------------------------------------------------

def test_the_flag_tables_are_the_ones_the_help_shows():
    usage = cs("--help").stdout
    for command in ("freeze", "inspect", "run"):
        for name in _flags(command):
            assert re.search(r"(^|[\s\[(/])%s([\s=\]),/;]|$)" % re.escape(name), usage, re.M), (command, name)
    assert "--output" not in _flags("freeze") and "--output-file" in _flags("freeze")


def test_every_flag_of_run_given_to_freeze_and_the_reverse_is_a_usage_error(dense, frozen, web_server, tmp_path):
    freeze, run = _flags("freeze"), _flags("run")
    model, x = str(frozen / "m.pb"), str(tmp_path / "x.npy")
    np.save(x, np.ones((1, 3), np.float32))
    cases = []
    for name, value in run.items():
        if name not in freeze:
            argv = ["freeze", dense.directory, "--server", web_server.web_url, "-o", str(tmp_path / "out.pb")]
            cases.append((argv, name, value, "run"))
    for name, value in freeze.items():
        if name not in run:
            argv = ["run", model, "--input", "x=" + x, "--output", "y:0=" + str(tmp_path / "y.npy")]
            cases.append((argv, name, value, "freeze"))
    assert len(cases) >= 20
    for argv, name, value, owner in cases:
        given = [name] + ([] if value is None else ["pred" if name == "--output" else "v"])
        out = cs(*argv[:2], *given, *argv[2:])  # before the other flags: a value never eats it
        assert out.returncode == 2, (name, argv[0], out.stdout, out.stderr)
        assert name in out.stderr and "tffreeze-cs " + owner in out.stderr, (name, out.stderr)
        assert _written(tmp_path) == ["x.npy"], (name, _written(tmp_path))
    said = cs("freeze", dense.directory, "-o", str(tmp_path / "b.pb"), "--output", "pred").stderr
    assert "--output NAME" in said and "tffreeze-cs run" in said and "-o/--output-file" in said, said


def test_no_flag_is_abbreviated(dense, web_server, tmp_path):
    for command, argv in (("freeze", [dense.directory, "--server", web_server.web_url, "-o", str(tmp_path / "o.pb")]),
                          ("run", [str(tmp_path / "m.pb"), "--output", "y"])):
        for name in _flags(command):
            if not name.startswith("--") or len(name) < 6:
                continue
            short = name[:-2]
            if short in _flags(command) or short in _flags("run") or short in _flags("freeze"):
                continue
            out = cs(command, *argv, short, "v")
            assert out.returncode == 2, (command, short, out.stderr)
            assert "%s is not a flag of `tffreeze-cs %s`: flags are written in full (" % (short, command) in out.stderr
            assert name in out.stderr, (short, out.stderr)
            assert _written(tmp_path) == [], short
    eaten = cs("freeze", dense.directory, "--server", web_server.web_url, "-o", "--manifest", str(tmp_path / "m.json"))
    assert eaten.returncode == 2 and "-o needs a value" in eaten.stderr, eaten.stderr  # no file named --manifest
    assert _written(tmp_path) == []


def test_output_file_is_freezes_long_name_for_o(dense, web_server, tmp_path):
    out = cs("freeze", dense.directory, "--server", web_server.web_url, "--output-file", str(tmp_path / "a.pb"))
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "a.pb").exists()
    twice = cs("freeze", dense.directory, "--server", web_server.web_url, "-o", str(tmp_path / "b.pb"),
               "--output-file", str(tmp_path / "c.pb"))
    assert twice.returncode == 2 and "once" in twice.stderr, twice.stderr


# -- 4: no leftovers ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A checkpoint whose graph is about 64 MiB: writing it takes long enough to be interrupted."""
    weights = np.random.RandomState(1).rand(4096, 4096).astype(np.float32)

    def build():
        x = models.tf1.placeholder(models.tf.float32, [None, 4096], name="x")
        w = models._variable("w", weights, True)
        models.tf.matmul(x, w, name="y")
    return models._save(str(tmp_path_factory.mktemp("big") / "ckpt"), build, {}, [])


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _parts(folder):
    return [n for n in os.listdir(folder) if n.endswith(".part")]


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_signal_while_the_graph_is_written_leaves_no_temporary_file(big, web_server, tmp_path, signum, code):
    warm = cs("freeze", big.directory, "--server", web_server.web_url, "-o", str(tmp_path / "warm.pb"))
    assert warm.returncode == 0, warm.stderr  # uploaded and frozen once: the next runs write at once
    os.unlink(tmp_path / "warm.pb")
    for attempt in range(5):
        out = tmp_path / ("out%d.pb" % attempt)
        proc = subprocess.Popen([CS, "freeze", big.directory, "--server", web_server.web_url, "-o", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        caught = False
        while proc.poll() is None:
            if [n for n in _parts(tmp_path) if n.startswith("." + out.name + ".") and _size(tmp_path / n) > 0]:
                proc.send_signal(signal.SIGSTOP)  # held in the middle of writing
                caught = proc.poll() is None and bool(_parts(tmp_path))
                proc.send_signal(signum)
                proc.send_signal(signal.SIGCONT)
                break
            time.sleep(0.001)
        _, stderr = proc.communicate(timeout=120)
        if not caught:
            assert proc.returncode == 0, stderr
            os.unlink(out)
            continue
        assert proc.returncode == code, stderr
        assert "stopped by " + signal.Signals(signum).name in stderr, stderr
        assert _parts(tmp_path) == [] and not out.exists(), _written(tmp_path)
        return
    pytest.fail("the graph was never caught being written in 5 tries")


def test_stale_temporary_files_are_removed_by_the_next_freeze_and_live_ones_kept(dense, web_server, tmp_path):
    out = tmp_path / "m.pb"
    dead = subprocess.Popen(["true"])
    dead.wait()
    old = time.time() - 120
    planted = {
        ".m.pb.%d-0123abcd.part" % dead.pid: False,         # a writer's (any client's naming), its process gone
        ".m.pb.%d-89abcdef.part" % os.getpid(): True,       # a live writer's (this process)
        ".m.pb.%d-ab12cd34.part" % os.getpid(): True,       # a live writer's, untouched for 2 minutes: kept
        ".m.pb.Ab3x9Qz1.part": True,                        # no pid, fresh: may be being written
        ".m.pb.Zz9_Yy8x.part": False,                       # no pid, untouched for 2 minutes
        ".m.pb.q1W2e3.part": False,                         # C++'s XXXXXX, untouched for 2 minutes
        ".other.pb.Zz9_Yy8x.part": True,                    # another output's
        ".m.pb.notes.txt": True,                            # not a temporary file
        ".m.pb.a-b.part": True,                             # not tffreeze's naming
    }
    for name in planted:
        (tmp_path / name).write_bytes(b"partial")
    for name in (".m.pb.Zz9_Yy8x.part", ".m.pb.q1W2e3.part", ".other.pb.Zz9_Yy8x.part", ".m.pb.a-b.part",
                 ".m.pb.%d-ab12cd34.part" % os.getpid()):
        os.utime(tmp_path / name, (old, old))
    done = cs("freeze", dense.directory, "--server", web_server.web_url, "-o", str(out))
    assert done.returncode == 0, done.stderr
    for name, kept in planted.items():
        assert (tmp_path / name).exists() == kept, name
    assert out.exists()


# -- 5: the local server from a plain shell ----------------------------------------------------

def test_a_plain_shell_starts_the_local_server_with_the_checkouts_venv(dense, tmp_path):
    if not os.path.exists(os.path.join(ROOT, ".venv", "bin", "tffreeze")):
        pytest.skip("no .venv/bin/tffreeze in this checkout (make setup)")
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "TFFREEZE_CACHE_DIR": str(tmp_path / "cache")}
    try:
        out = cs("freeze", dense.directory, "-o", str(tmp_path / "m.pb"), env=env)
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "m.pb").exists()
        status = subprocess.run([os.path.join(ROOT, ".venv", "bin", "tffreeze"), "local-server", "status"], env=env,
                                capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
    finally:
        stop = subprocess.run([os.path.join(ROOT, ".venv", "bin", "tffreeze"), "local-server", "stop"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert stop.returncode == 0, stop.stderr


def test_with_no_tffreeze_command_anywhere_the_message_says_what_was_looked_at(dense, tmp_path):
    lonely = tmp_path / "bin"
    lonely.mkdir()
    exe = lonely / "tffreeze-cs.exe"  # a copy outside any checkout: no .venv above it
    for name in os.listdir(os.path.join(ROOT, "client_csharp", "bin")):
        if name.endswith((".exe", ".dll")):
            with open(os.path.join(ROOT, "client_csharp", "bin", name), "rb") as fh:
                (lonely / name).write_bytes(fh.read())
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "TFFREEZE_CACHE_DIR": str(tmp_path / "cache")}
    if os.path.exists("/usr/bin/tffreeze") or os.path.exists("/bin/tffreeze"):
        pytest.skip("a tffreeze command is installed in /usr/bin")
    out = subprocess.run(["mono", str(exe), "freeze", dense.directory, "-o", str(tmp_path / "m.pb")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    assert "TFFREEZE_COMMAND" in out.stderr and ".venv/bin/tffreeze" in out.stderr and "make setup" in out.stderr
    assert not (tmp_path / "m.pb").exists()


# -- 7: outputs checked first, OS errors explained ---------------------------------------------

def test_o_naming_a_folder_is_refused_before_anything_is_sent(dense, web_server, tmp_path):
    (tmp_path / "somedir").mkdir()
    out = cs("freeze", dense.directory, "--server", web_server.web_url, "-o", str(tmp_path / "somedir"))
    assert out.returncode == 1, out.stderr
    assert "-o %s is a folder: give a file name (e.g. %s)" % (tmp_path / "somedir", tmp_path / "somedir" / "model.pb") \
        in out.stderr and "[INVALID_ARGUMENT]" in out.stderr, out.stderr
    assert "already exists" not in out.stderr
    assert os.listdir(tmp_path / "somedir") == [] and _written(tmp_path) == ["somedir"]
    missing = cs("freeze", dense.directory, "--server", web_server.web_url, "-o", str(tmp_path / "no" / "m.pb"))
    assert missing.returncode == 1 and "the folder %s does not exist: create it, or give -o another path [NOT_FOUND]" % (
        tmp_path / "no") in missing.stderr, missing.stderr
    manifest = cs("freeze", dense.directory, "--server", web_server.web_url, "-o", str(tmp_path / "ok.pb"),
                  "--manifest", str(tmp_path / "somedir"))
    assert manifest.returncode == 1 and "--manifest " + str(tmp_path / "somedir") + " is a folder" in manifest.stderr
    assert not (tmp_path / "ok.pb").exists()



def test_o_or_manifest_naming_a_file_of_the_checkpoint_is_refused_and_the_checkpoint_kept(dense, web_server, tmp_path):
    ckpt = tmp_path / "cp3"
    shutil.copytree(dense.directory, ckpt)
    before = clashes.folder_hashes(ckpt)
    prefix, cases = clashes.checkpoint_file_cases(ckpt, tmp_path)
    index = next(n for n in before if n.endswith(".index"))
    for source in (str(ckpt), str(ckpt / prefix)):  # a folder and a prefix: the same files
        for server in (web_server.web_url, "http://127.0.0.1:1"):  # unreachable: refused before any call
            for argv, flag, path, name, what in cases:
                out = cs("freeze", source, *argv, "--server", server)
                assert out.returncode == 2, (argv, out.stdout, out.stderr)
                assert out.stderr.splitlines()[0] == (
                    "tffreeze-cs freeze: %s %s is a file of the checkpoint being frozen (%s): give %s another path"
                    % (flag, path, name, what)), out.stderr
                assert clashes.folder_hashes(ckpt) == before, argv
    # The path as typed (relative, through ..), the file by identity.
    out = cs("freeze", "cp3", "-o", "cp3/../cp3/" + index, "--server", web_server.web_url, cwd=str(tmp_path))
    assert out.returncode == 2 and out.stderr.splitlines()[0] == (
        "tffreeze-cs freeze: -o cp3/../cp3/%s is a file of the checkpoint being frozen (%s): give the graph another "
        "path" % (index, index)), out.stderr
    assert clashes.folder_hashes(ckpt) == before and _written(tmp_path) == ["cp3"]


def test_freezing_into_the_checkpoint_folder_twice_replaces_the_earlier_graph(dense, web_server, tmp_path):
    # Only the files a checkpoint is made of are refused: the graph an earlier freeze wrote into
    # SOURCE's folder (now in its listing) is replaced, and the checkpoint is kept.
    ckpt = tmp_path / "cp4"
    shutil.copytree(dense.directory, ckpt)
    before = clashes.folder_hashes(ckpt)
    for attempt in (1, 2):
        out = cs("freeze", str(ckpt), "-o", str(ckpt / "frozen.pb"), "--server", web_server.web_url)
        assert out.returncode == 0, (attempt, out.stdout, out.stderr)
        assert (ckpt / "frozen.pb").stat().st_size > 0
        assert {n: h for n, h in clashes.folder_hashes(ckpt).items() if n != "frozen.pb"} == before, attempt
    assert not [p for p in os.listdir(ckpt) if p.endswith(".part")]


def test_a_closed_pipe_ends_the_process_quietly():
    head = subprocess.run(["bash", "-c", "%s --help | head -1; echo \"status ${PIPESTATUS[0]}\"" % shlex.quote(CS)],
                          capture_output=True, text=True, timeout=120)
    assert head.stdout.splitlines()[0] == "usage: tffreeze-cs COMMAND ...", head.stdout
    assert head.stdout.splitlines()[-1] in ("status 0", "status 141"), head.stdout
    assert "Exception" not in head.stderr and head.stderr == "", head.stderr
    # The reader gone before anything is written: stdout's write fails, and so does stderr's.
    for command in ("%s --help | true", "%s freeze --manif x 2>&1 | true", "%s freeze --manif x 2>&1 >/dev/null | true"):
        gone = subprocess.run(["bash", "-c", (command + "; echo \"status ${PIPESTATUS[0]}\"") % shlex.quote(CS)],
                              capture_output=True, text=True, timeout=120)
        assert gone.stdout.strip() in ("status 0", "status 141", "status 2"), (command, gone.stdout)
        assert "Exception" not in gone.stderr and gone.stderr == "", (command, gone.stderr)


def test_a_read_only_manifest_folder_is_refused_before_the_graph_is_written(dense, web_server):
    user = users.ordinary()
    folder = user.folder()
    try:
        ckpt = os.path.join(folder, "ckpt")
        models.dense(ckpt, True)
        os.makedirs(os.path.join(folder, "ro"))
        user.give(folder)
        os.chmod(os.path.join(folder, "ro"), 0o555)
        env = user.env()
        out = user.run([CS, "freeze", ckpt, "--server", web_server.web_url, "-o", os.path.join(folder, "ok.pb"),
                        "--manifest", os.path.join(folder, "ro", "m.json")], env=env)
        assert out.returncode == 1, out.stderr
        said = out.stderr
        assert "--manifest %s: you may not write in %s: give --manifest another path in a folder you can write " \
               "[PERMISSION_DENIED]" % (os.path.join(folder, "ro", "m.json"), os.path.join(folder, "ro")) in said, said
        assert not os.path.exists(os.path.join(folder, "ok.pb"))
        assert os.listdir(os.path.join(folder, "ro")) == []
        assert not [n for n in os.listdir(folder) if n.endswith(".part")]
    finally:
        subprocess.run(["rm", "-rf", folder])


# -- 10: run -----------------------------------------------------------------------------------

def test_run_of_an_onnx_or_tflite_model_says_where_it_runs(frozen, tmp_path):
    for name, data in (("model.onnx", b"\x08\x07"), ("model.tflite", b"\x1c\x00\x00\x00TFL3"),
                       ("renamed.pb", b"\x1c\x00\x00\x00TFL3\x00\x00")):
        (tmp_path / name).write_bytes(data)
        out = cs("run", str(tmp_path / name), "--output", "y")
        assert out.returncode == 1, (name, out.stderr)  # as tffreeze-cpp: an error in what was given
        assert "tffreeze-cs runs frozen GraphDef .pb files only" in out.stderr and "`tffreeze run " in out.stderr \
            and out.stderr.rstrip().endswith("[INVALID_ARGUMENT]"), out.stderr
        assert "Invalid GraphDef [TENSORFLOW]" not in out.stderr
    (tmp_path / "junk.pb").write_bytes(b"\xff" * 64)
    junk = cs("run", str(tmp_path / "junk.pb"), "--output", "y")
    assert junk.returncode == 1 and "is not a TensorFlow GraphDef" in junk.stderr, junk.stderr


def test_run_with_a_manifest_and_no_output_prints_every_output_as_python_does(frozen, tmp_path):
    x = str(tmp_path / "x.npy")
    np.save(x, (np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0))
    argv = ["run", str(frozen / "m.pb"), "--manifest", str(frozen / "m.json"), "--input", "x=" + x]
    ours = cs(*argv)
    assert ours.returncode == 0, ours.stderr
    python = subprocess.run([PY, *argv], capture_output=True, text=True, timeout=300)
    assert python.returncode == 0, python.stderr
    assert ours.stdout == python.stdout and ours.stdout.startswith("y:0 float32 [4, 2] ["), ours.stdout
    named = cs(*argv, "--output", "y")
    assert named.returncode == 0 and named.stdout.startswith("y float32 [4, 2] ["), named.stdout
    none = cs("run", str(frozen / "m.pb"), "--input", "x:0=" + x)
    assert none.returncode == 2 and "--manifest" in none.stderr and "--output NAME" in none.stderr, none.stderr


def test_the_freeze_summary_has_pythons_bound_verify_and_format_lines(web_server, tmp_path):
    model = models.training_graph(str(tmp_path / "bn"), True, fused=True)
    lines = {}
    for client, argv in (("py", [PY, "freeze", model.directory, "--server", web_server.target]),
                         ("cs", [CS, "freeze", model.directory, "--server", web_server.web_url])):
        out = subprocess.run(argv + ["-o", str(tmp_path / (client + ".onnx")), "--format", "onnx", "--verify"],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, (client, out.stderr)
        lines[client] = [l for l in out.stdout.splitlines() if l.startswith(("  bound", "  verify", "  format"))]
    assert any(l.startswith("  bound") for l in lines["py"]), lines["py"]
    assert any(l.startswith("  format  onnx") for l in lines["py"]), lines["py"]
    assert lines["cs"] == lines["py"]


def test_a_full_disk_names_the_path_and_the_fix_and_leaves_nothing(web_server, tmp_path):
    """The graph (4 MiB) written to a 1 MiB tmpfs, mounted in a mount namespace of the client's own."""
    weights = np.random.RandomState(2).rand(1024, 1024).astype(np.float32)

    def build():
        x = models.tf1.placeholder(models.tf.float32, [None, 1024], name="x")
        models.tf.matmul(x, models._variable("w", weights, True), name="y")
    model = models._save(str(tmp_path / "ckpt"), build, {}, [])
    small = tmp_path / "small"
    small.mkdir()
    probe = subprocess.run(["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs '%s'" % small],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (unshare --mount): " + probe.stderr.strip())
    script = "mount -t tmpfs -o size=1m tmpfs '%s' && \"$@\"; code=$?; ls -A '%s'; exit $code" % (small, small)
    out = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", CS, "freeze", model.directory,
                          "--server", web_server.web_url, "-o", str(small / "m.pb")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "-o %s: no space left for the graph in %s (the disk is full): free some space there, or give -o another " \
           "path [RESOURCE_EXHAUSTED]" % (small / "m.pb", small) in out.stderr, out.stderr
    assert out.stdout.strip() == "", out.stdout  # the tmpfs was left empty: no graph, no temporary file
