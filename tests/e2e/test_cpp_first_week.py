"""Issue 34, the C++ client's part (`tffreeze-cpp`, `make cpp`), against a real server:

- 3: every flag of `run` given to `freeze`, and the reverse, is a usage error (exit 2) naming
  the command that takes it, with nothing written; the flags come from the CLI's own table
  (kFlags in client_cpp/src/main.cc), checked against its help; no abbreviations;
- 4: SIGTERM, SIGHUP (and SIGINT) in the middle of writing the output leave no `.part` file
  (exit 143, 129, 130); a `.part` left by a killed freeze is removed by the next freeze of
  that output, while fresh ones, locked ones and other names are kept;
- 5: from a plain shell (PATH=/usr/bin:/bin, no TFFREEZE_COMMAND) the local server is started
  with the checkout's .venv/bin/tffreeze;
- 7: `-o FOLDER` and a read-only `--manifest` folder are refused before anything is sent or
  written, naming the flag, the path and the fix;
- 1 (trial): -o or --manifest naming a file of the checkpoint being frozen (its .index, .data,
  .meta) is a usage error before anything is sent or written; the checkpoint is unchanged;
  a graph an earlier freeze wrote into the checkpoint's folder is replaced (frozen twice, exit 0);
- 9: the help names a README section that exists and starts no server by hand;
- 10: `run model.onnx` says what runs it; `run --manifest` without `--output` prints every
  output as `tffreeze run` does; the freeze summary has Python's bound/verify/format lines."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

import clashes
import models
from test_cpp import built  # noqa: F401 - autouse: the C++ client built, or a skip that says why
import users

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPP = os.path.join(ROOT, "client_cpp", "bin", "tffreeze-cpp")
MAIN_CC = os.path.join(ROOT, "client_cpp", "src", "main.cc")
PY = os.path.join(os.path.dirname(sys.executable), "tffreeze")
VENV_TFFREEZE = os.path.join(ROOT, ".venv", "bin", "tffreeze")


def cpp(*args, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run([CPP, *map(str, args)], capture_output=True, text=True, **kw)


def flag_table():
    """kFlags of main.cc: flag -> (metavar, commands)."""
    text = open(MAIN_CC).read()
    body = text[text.index("const Flag kFlags[] = {"):]
    body = body[:body.index("};")]
    rows = re.findall(r'\{"(-[-\w]+)", "([^"]*)", "([a-z ]+)"\}', body)
    return {name: (metavar, set(commands.split())) for name, metavar, commands in rows}


def listing(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs)


# --- 3: flags mean what they say --------------------------------------------------------------

def test_every_flag_of_run_given_to_freeze_and_the_reverse_is_exit_2(server, tmp_path):
    table = flag_table()
    assert {"--input", "--output", "--runtime", "--libtensorflow", "--verbose", "-o", "--output-file",
            "--optimize", "--quiet", "--json", "--server"} <= set(table), table
    helped = cpp("--help").stdout
    for name in table:  # the table and the help agree
        assert re.search(r"(^|[\s\[|(])%s([\s=\]|)]|$)" % re.escape(name), helped, re.M), name
    model = models.dense(str(tmp_path / "ckpt"), True)
    work = tmp_path / "work"
    work.mkdir()
    cases = []
    for name, (metavar, commands) in table.items():
        for command, other in (("freeze", "run"), ("run", "freeze")):
            if command in commands:
                continue
            value = [] if not metavar else ["v=%s" % (work / "v.npy")] if "=" in metavar else ["v"]
            if command == "freeze":
                argv = ["freeze", model.directory, "-o", work / "out.pb", "--server", server.target, name, *value]
            else:
                argv = ["run", work / "m.pb", "--output", "y=%s" % (work / "y.npy"), name, *value]
            cases.append((name, command, commands, argv))
    assert {c[0] for c in cases if c[1] == "freeze"} >= {"--input", "--output", "--runtime", "--libtensorflow",
                                                          "--verbose", "--json"}
    assert {c[0] for c in cases if c[1] == "run"} >= {"-o", "--output-file", "--optimize", "--server", "--outputs"}
    for name, command, commands, argv in cases:
        out = cpp(*argv)
        assert out.returncode == 2, (argv, out.stdout, out.stderr)
        first = out.stderr.splitlines()[0]
        assert first.startswith("tffreeze-cpp %s: %s" % (command, name)), first
        for owner in commands:
            assert "`tffreeze-cpp %s`" % owner in first, first
        assert listing(work) == [], (argv, listing(work))
    out = cpp("freeze", model.directory, "-o", work / "b.pb", "--output", "pred", "--server", server.target)
    assert out.returncode == 2 and out.stderr.splitlines()[0] == (
        "tffreeze-cpp freeze: --output NAME[=FILE.npy] is a flag of `tffreeze-cpp run`; freeze writes its graph "
        "with -o/--output-file"), out.stderr
    # No abbreviations: a prefix of a flag is not that flag; the message names the flags it may
    # have meant, as tffreeze and tffreeze-cs word it.
    for abbreviated, meant in (("--manif", "--manifest"), ("--output-fi", "--output-file"),
                               ("--outp", "--output-file or --outputs"), ("--opt", "--optimize"), ("--serv", "--server")):
        out = cpp("freeze", model.directory, "-o", work / "b.pb", abbreviated, "x", "--server", server.target)
        assert out.returncode == 2 and out.stderr.splitlines()[0] == (
            "tffreeze-cpp freeze: %s is not a flag of `tffreeze-cpp freeze`: flags are written in full (%s)"
            % (abbreviated, meant)), out.stderr
    out = cpp("freeze", model.directory, "-o", work / "b.pb", "--nonsense", "--server", server.target)
    assert out.returncode == 2 and "unknown option --nonsense" in out.stderr, out.stderr
    assert listing(work) == []
    # --output-file is -o's long spelling.
    out = cpp("freeze", model.directory, "--output-file", work / "long.pb", "--server", server.target)
    assert out.returncode == 0, out.stderr
    assert listing(work) == ["long.pb"]


# --- 4: no leftovers --------------------------------------------------------------------------

def big_model(directory):
    """A dense layer of 96 MB of weights: writing its graph takes long enough to be interrupted."""
    def build():
        x = models.tf1.placeholder(models.tf.float32, [None, 4096], name="x")
        w = models.tf1.get_variable("w", shape=[4096, 6144], initializer=models.tf1.random_normal_initializer(seed=1),
                                    use_resource=True)
        models.tf.identity(models.tf.matmul(x, w), name="y")

    return models._save(directory, build, {"x:0": np.ones((1, 4096), np.float32)}, ["y:0"])


def parts(folder, name="out.pb"):
    return sorted(p for p in os.listdir(folder) if p.startswith("." + name + ".") and p.endswith(".part"))


def _written(folder, name):
    """The .part files with bytes in them: the graph being written (not the empty one the client makes
    and removes at once to find out whether the folder takes a file)."""
    out = []
    for p in parts(folder):
        try:
            if os.path.getsize(os.path.join(folder, p)) > 0:
                out.append(p)
        except OSError:  # (removed meanwhile)
            pass
    return out


def interrupt_while_writing(argv, folder, sig):
    """Start a freeze, stop it the moment its .part file has bytes in it, send sig, let it go on."""
    proc = subprocess.Popen([CPP, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    deadline = time.monotonic() + 600
    while proc.poll() is None and time.monotonic() < deadline:
        seen = _written(folder, "out.pb")
        if seen:
            os.kill(proc.pid, signal.SIGSTOP)
            break
        time.sleep(0.0005)
    assert seen, "the freeze ended (%s) before its .part file was seen" % proc.poll()
    os.kill(proc.pid, sig)
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, seen, err


def test_an_interrupt_with_a_manifest_leaves_the_old_graph_and_no_link_kept_of_it(server, tmp_path):
    """Trial 11 (ROUGH 7): with --manifest, the old graph is kept as a hard link
    (.out.pb.PID-keepXXXX.part) until the manifest is in place; an interrupt left that link."""
    model = big_model(str(tmp_path / "big"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "out.pb").write_bytes(b"the old graph")
    argv = [CPP, "freeze", model.directory, "-o", out_dir / "out.pb", "--manifest", out_dir / "out.json", "--server",
            server.target, "--quiet"]
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        proc = subprocess.Popen(list(map(str, argv)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline, seen = time.monotonic() + 600, []
        while proc.poll() is None and time.monotonic() < deadline:
            seen = [p for p in _written(out_dir, "out.pb") if "-keep" not in p]
            if seen and [p for p in parts(out_dir) if "-keep" in p]:
                break
            time.sleep(0.0005)
        assert seen, "the freeze ended (%s) before its .part file was seen" % proc.poll()
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, (sig, proc.returncode, err)
        assert sorted(os.listdir(out_dir)) == ["out.pb"], (sig, os.listdir(out_dir))
        assert (out_dir / "out.pb").read_bytes() == b"the old graph"


def test_sigterm_sighup_sigint_leave_no_part_and_stale_parts_are_removed(server, tmp_path):
    model = big_model(str(tmp_path / "big"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    argv = ["freeze", model.directory, "-o", out_dir / "out.pb", "--server", server.target, "--quiet"]
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)):
        rc, seen, err = interrupt_while_writing(argv, out_dir, sig)
        assert rc == code, (sig, rc, err)
        assert os.listdir(out_dir) == [], (sig, seen, os.listdir(out_dir))
        said = "interrupted" if sig == signal.SIGINT else "stopped by %s (nothing left half-written)" % sig.name
        assert err.rstrip().endswith("tffreeze-cpp freeze: " + said), (sig, err)  # as the other clients say it
    # A freeze killed outright (SIGKILL: no handler runs) leaves its .part ...
    rc, seen, _ = interrupt_while_writing(argv, out_dir, signal.SIGKILL)
    left = parts(out_dir)
    assert rc == -signal.SIGKILL and len(left) == 1, (rc, seen, left)
    killed = out_dir / left[0]
    # ... and others: a fresh one (a freeze may be starting), an old one a live writer locks,
    # another client's naming, another output's.
    fresh = out_dir / ".out.pb.Fr3shX.part"
    locked = out_dir / ".out.pb.L0cked.part"
    foreign = out_dir / ".out.pb.abcd12345.part"  # no tffreeze client's naming
    other = out_dir / ".other.pb.Ab12Cd.part"
    # The Python and C# clients' naming carries the writer's pid: a gone writer's file goes, a
    # live one's stays, whatever their age.
    gone = subprocess.Popen(["true"])
    gone.wait()
    py_gone = out_dir / (".out.pb.%d-abcd_123.part" % gone.pid)
    cs_gone = out_dir / (".out.pb.cs%d-0123abcd.part" % gone.pid)
    py_live = out_dir / (".out.pb.%d-abcd_123.part" % os.getpid())
    cs_live = out_dir / (".out.pb.cs%d-0123abcd.part" % os.getpid())
    for p in (fresh, locked, foreign, other, py_gone, cs_gone, py_live, cs_live):
        p.write_bytes(b"partial")
    old = time.time() - 300
    for p in (killed, locked, foreign, other):
        os.utime(p, (old, old))
    with open(locked, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = cpp(*argv)
        assert done.returncode == 0, done.stderr
    left = sorted(os.listdir(out_dir))
    assert left == sorted(["out.pb", fresh.name, locked.name, foreign.name, other.name, py_live.name,
                           cs_live.name]), left
    assert os.path.getsize(out_dir / "out.pb") > 96 * 1024 * 1024


# --- 5: a plain shell starts the local server -------------------------------------------------

def test_plain_shell_freeze_starts_the_local_server(tmp_path):
    model = models.dense(str(tmp_path / "ckpt"), True)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8",
           "TFFREEZE_CACHE_DIR": str(cache)}
    assert shutil.which("tffreeze", path=env["PATH"]) is None  # only the checkout's .venv has it
    try:
        out = cpp("freeze", model.directory, "-o", tmp_path / "m.pb", env=env, cwd=str(tmp_path))
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "m.pb").stat().st_size > 0
        status = subprocess.run([VENV_TFFREEZE, "local-server", "status"], capture_output=True, text=True, env=env,
                                timeout=120)
        assert status.returncode == 0 and "grpc" in status.stdout, status.stdout + status.stderr
    finally:
        subprocess.run([VENV_TFFREEZE, "local-server", "stop"], capture_output=True, env=env, timeout=120)
    # A copy of the binary outside the checkout, with no tffreeze on PATH: says where it looked.
    lone = tmp_path / "elsewhere" / "bin"
    lone.mkdir(parents=True)
    shutil.copy(CPP, lone / "tffreeze-cpp")
    out = subprocess.run([str(lone / "tffreeze-cpp"), "freeze", model.directory, "-o", tmp_path / "n.pb"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "$TFFREEZE_COMMAND" in out.stderr and ".venv/bin/tffreeze" in out.stderr and "PATH" in out.stderr
    assert not (tmp_path / "n.pb").exists()


# --- 7: outputs checked first; OS errors with the path, the flag and the fix ------------------

def test_output_folder_is_refused_before_anything_is_sent(server, tmp_path):
    model = models.dense(str(tmp_path / "ckpt"), True)
    folder = tmp_path / "somedir"
    folder.mkdir()
    for target in (server.target, "127.0.0.1:1"):  # unreachable: refused before any call
        out = cpp("freeze", model.directory, "-o", folder, "--manifest", tmp_path / "m.json", "--server", target)
        assert out.returncode == 1, out.stderr
        assert out.stderr.strip() == (
            "tffreeze-cpp freeze: -o %s is a folder: give a file name (e.g. %s) [INVALID_ARGUMENT]"
            % (folder, folder / "model.pb")), out.stderr
        out = cpp("freeze", model.directory, "-o", tmp_path / "ok.pb", "--manifest", folder, "--server", target)
        assert out.returncode == 1 and "--manifest %s is a folder: give a file name" % folder in out.stderr
    assert listing(folder) == [] and not (tmp_path / "ok.pb").exists() and not (tmp_path / "m.json").exists()
    assert "filesystem error" not in out.stderr



def test_o_or_manifest_naming_a_file_of_the_checkpoint_is_refused_and_the_checkpoint_kept(server, tmp_path):
    model = models.dense(str(tmp_path / "original"), True)
    ckpt = tmp_path / "cp2"
    shutil.copytree(model.directory, ckpt)
    before = clashes.folder_hashes(ckpt)
    prefix, cases = clashes.checkpoint_file_cases(ckpt, tmp_path)
    data = next(n for n in before if ".data-" in n)
    for source in (str(ckpt), str(ckpt / prefix)):  # a folder and a prefix: the same files
        for target in (server.target, "127.0.0.1:1"):  # unreachable: refused before any call
            for argv, flag, path, name, what in cases:
                out = cpp("freeze", source, *argv, "--server", target)
                assert out.returncode == 2, (argv, out.stdout, out.stderr)
                assert out.stderr.splitlines()[0] == (
                    "tffreeze-cpp freeze: %s %s is a file of the checkpoint being frozen (%s): give %s another path"
                    % (flag, path, name, what)), out.stderr
                assert clashes.folder_hashes(ckpt) == before, argv
    # The path as typed (relative, through ..), the file by identity.
    out = cpp("freeze", "cp2", "-o", "cp2/../cp2/" + data, "--server", server.target, cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.splitlines()[0] == (
        "tffreeze-cpp freeze: -o cp2/../cp2/%s is a file of the checkpoint being frozen (%s): give the graph another "
        "path" % (data, data)), out.stderr
    assert clashes.folder_hashes(ckpt) == before and not (tmp_path / "ok.pb").exists()
    assert not [p for p in os.listdir(ckpt) + os.listdir(tmp_path) if p.endswith(".part")]


def test_freezing_into_the_checkpoint_folder_twice_replaces_the_earlier_graph(server, tmp_path):
    # Only the files a checkpoint is made of are refused: the graph an earlier freeze wrote into
    # SOURCE's folder (now in its listing) is replaced, and the checkpoint is kept.
    model = models.dense(str(tmp_path / "original"), True)
    ckpt = tmp_path / "cp4"
    shutil.copytree(model.directory, ckpt)
    before = clashes.folder_hashes(ckpt)
    for attempt in (1, 2):
        out = cpp("freeze", ckpt, "-o", ckpt / "frozen.pb", "--server", server.target)
        assert out.returncode == 0, (attempt, out.stdout, out.stderr)
        assert (ckpt / "frozen.pb").stat().st_size > 0
        assert {n: h for n, h in clashes.folder_hashes(ckpt).items() if n != "frozen.pb"} == before, attempt
    assert not [p for p in os.listdir(ckpt) if p.endswith(".part")]


def test_read_only_manifest_folder_writes_nothing(server, tmp_path):
    user = users.ordinary()  # root writes anywhere: an ordinary user meets the read-only folder
    home = user.folder("tffreeze-cpp-ro-")
    try:
        model = models.dense(os.path.join(home, "ckpt"), True)
        ro = os.path.join(home, "ro")
        os.mkdir(ro)
        user.give(home)
        os.chmod(ro, 0o555)
        out = user.run([CPP, "freeze", model.directory, "-o", os.path.join(home, "ok.pb"), "--manifest",
                        os.path.join(ro, "m.json"), "--server", server.target],
                       env=user.env(TFFREEZE_CACHE_DIR=os.path.join(home, "cache")))
        assert out.returncode == 1, out.stdout + out.stderr
        assert out.stderr.strip() == (
            "tffreeze-cpp freeze: --manifest %s: you may not write in %s: give --manifest another path in a folder "
            "you can write [PERMISSION_DENIED]" % (os.path.join(ro, "m.json"), ro)), out.stderr
        assert not os.path.exists(os.path.join(home, "ok.pb")) and os.listdir(ro) == []
        assert not [p for p in os.listdir(home) if p.endswith(".part")]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_full_disk_names_the_path_the_flag_and_the_fix(server, tmp_path):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        users.require_or_skip("a full filesystem is made with a tmpfs in a mount namespace (root, unshare)")
    model = models.dense(str(tmp_path / "ckpt"), True)
    full = tmp_path / "full"
    full.mkdir()
    script = 'mount -t tmpfs -o size=4k tmpfs "$1" && head -c 4096 /dev/zero > "$1/fill" && shift && exec "$@"'
    out = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(full), CPP, "freeze", model.directory,
                          "-o", str(full / "x.pb"), "--server", server.target], capture_output=True, text=True,
                         timeout=300)
    if "mount" in out.stderr and out.returncode != 1:
        users.require_or_skip("no tmpfs could be mounted here: " + out.stderr.strip())
    assert out.returncode == 1 and out.stderr.strip() == (
        "tffreeze-cpp freeze: -o %s: no space left for the graph in %s (the disk is full): free some space there, "
        "or give -o another path [RESOURCE_EXHAUSTED]" % (full / "x.pb", full)), out.stderr
    assert os.listdir(full) == []  # the tmpfs is gone with its namespace; nothing was written here


# --- 9: the help ------------------------------------------------------------------------------

def test_help_names_a_readme_section_that_exists_and_starts_no_server_by_hand():
    helped = cpp("--help").stdout
    sections = re.findall(r'README\.md, "([^"]+)"', helped)
    headings = [h.strip() for h in re.findall(r"^#+ (.+)$", open(os.path.join(ROOT, "README.md")).read(), re.M)]
    assert sections and all(s in headings for s in sections), (sections, headings)
    assert not re.search(r"\btffreeze serve\b", helped), helped
    examples = helped[helped.index("examples"):]
    assert "tffreeze-cpp freeze" in examples and "--server" not in examples


# --- 10: run ----------------------------------------------------------------------------------

def test_run_refuses_converted_models_and_prints_every_output_with_a_manifest(server, tmp_path):
    model = models.saved_model_v2(str(tmp_path / "sm"))
    tf_lib = next(iter(__import__("glob").glob(os.path.join(ROOT, ".venv", "lib", "python3*", "site-packages",
                                                            "tensorflow"))))
    out = cpp("freeze", model.directory, "-o", tmp_path / "m.pb", "--manifest", tmp_path / "m.json",
              "--server", server.target)
    assert out.returncode == 0, out.stderr
    inputs = []
    for i, (name, value) in enumerate(model.feeds.items()):
        np.save(tmp_path / ("in%d.npy" % i), np.asarray(value))
        inputs += ["--input", "%s=%s" % (name, tmp_path / ("in%d.npy" % i))]
    # --manifest and no --output: every output printed, as `tffreeze run` prints them.
    ran = cpp("run", tmp_path / "m.pb", "--manifest", tmp_path / "m.json", "--libtensorflow", tf_lib, *inputs)
    assert ran.returncode == 0, ran.stderr
    py = subprocess.run([PY, "run", str(tmp_path / "m.pb"), "--manifest", str(tmp_path / "m.json"), *inputs],
                        capture_output=True, text=True, timeout=600)
    assert py.returncode == 0, py.stderr
    assert ran.stdout == py.stdout and len(ran.stdout.splitlines()) == len(model.expected), (ran.stdout, py.stdout)
    # --output NAME alone prints that one.
    name = sorted(model.expected)[0]
    one = cpp("run", tmp_path / "m.pb", "--manifest", tmp_path / "m.json", "--libtensorflow", tf_lib, *inputs,
              "--output", name)
    assert one.returncode == 0 and one.stdout.startswith(name + " "), one.stdout + one.stderr
    # Without --manifest, outputs must be named.
    bare = cpp("run", tmp_path / "m.pb", "--libtensorflow", tf_lib, *inputs)
    assert bare.returncode == 2 and "--output NAME[=FILE.npy]" in bare.stderr
    # ONNX and TFLite: refused, saying what runs them (by name, by manifest, by bytes).
    dense = models.dense(str(tmp_path / "dense"), True)
    np.save(tmp_path / "x.npy", dense.feeds["x:0"])
    assert cpp("freeze", dense.directory, "-o", tmp_path / "d.onnx", "--manifest", tmp_path / "d.json",
               "--format", "onnx", "--server", server.target).returncode == 0
    assert cpp("freeze", dense.directory, "-o", tmp_path / "d.tflite", "--format", "tflite", "--input-shape",
               "x=1,3", "--server", server.target).returncode == 0
    shutil.copy(tmp_path / "d.onnx", tmp_path / "onnx_named.pb")
    shutil.copy(tmp_path / "d.tflite", tmp_path / "tflite_named.pb")
    for argv in (["run", tmp_path / "d.onnx", "--manifest", tmp_path / "d.json"],
                 ["run", tmp_path / "onnx_named.pb", "--manifest", tmp_path / "d.json", "--output", "y"],
                 ["run", tmp_path / "d.tflite", "--output", "y"],
                 ["run", tmp_path / "tflite_named.pb", "--output", "y"]):
        out = cpp(*argv, "--input", "x=%s" % (tmp_path / "x.npy"), "--libtensorflow", tf_lib)
        assert out.returncode == 1, out.stderr
        line = out.stderr.strip()
        assert "tffreeze-cpp runs frozen GraphDef .pb files only" in line and "tffreeze run" in line, line
        assert "Invalid GraphDef" not in line and len(line.splitlines()) == 1
    # Anything else that is not a GraphDef: named as such.
    (tmp_path / "junk.pb").write_bytes(b"\x08\x96\x01 not a graph at all \xff\xff")
    out = cpp("run", tmp_path / "junk.pb", "--output", "y", "--libtensorflow", tf_lib)
    assert out.returncode == 1 and "is not a frozen GraphDef (.pb)" in out.stderr, out.stderr


def test_freeze_summary_has_pythons_bound_verify_and_format_lines(server, tmp_path):
    train = models.training_graph(str(tmp_path / "train"), True)
    dense = models.dense(str(tmp_path / "dense"), True)
    cases = [
        (train.directory, ["--bind", "keep_prob=1", "--verify"], ("  bound ", "  verify ")),
        (train.directory, ["--bind", "keep_prob=0.5"], ("  bound ",)),
        (dense.directory, ["--format", "onnx"], ("  format ",)),
    ]
    for i, (source, options, kinds) in enumerate(cases):
        c = cpp("freeze", source, "-o", tmp_path / ("c%d.out" % i), "--server", server.target, *options)
        p = subprocess.run([PY, "freeze", source, "-o", str(tmp_path / ("p%d.out" % i)), "--server", server.target,
                            *options], capture_output=True, text=True, timeout=600)
        assert c.returncode == 0 and p.returncode == 0, c.stderr + p.stderr
        c_lines, p_lines = c.stdout.splitlines()[2:], p.stdout.splitlines()[2:]  # after "wrote" and "uploaded"
        assert c_lines == p_lines, (options, c.stdout, p.stdout)
        for kind in kinds:
            assert any(line.startswith(kind) for line in c_lines), (kind, c.stdout)
