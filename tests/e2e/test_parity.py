"""One matrix through all three clients (Python CLI, `tffreeze-cs`, `tffreeze-cpp`) against
one real server: layouts x options. Every cell gives the same exit code in every client; a
success the same .pb bytes and manifest bytes (rendered by the server, holding no path of
this machine) and the same warnings; a failure the same error line, status and reason.

The C# and C++ clients are built by `make test`; where their toolchains are absent this
module skips and says why (CI sets TFFREEZE_REQUIRE_CPP=1, which makes that a failure)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

import models

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY = os.path.join(os.path.dirname(sys.executable), "tffreeze")
CS = os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")
CPP = os.path.join(ROOT, "client_cpp", "bin", "tffreeze-cpp")


@pytest.fixture(scope="module", autouse=True)
def built():
    for binary, target in ((CS, "csharp"), (CPP, "cpp")):
        if not os.path.exists(binary):
            if shutil.which("cmake") is None or shutil.which("mcs") is None:
                why = "the C#/C++ toolchains are absent (mcs, cmake): run `make csharp cpp`"
                if os.environ.get("TFFREEZE_REQUIRE_CPP") == "1":
                    pytest.fail(why + " -- TFFREEZE_REQUIRE_CPP=1 forbids skipping")
                print("SKIP: " + why)
                pytest.skip(why)
            subprocess.run(["make", "-s", "-C", ROOT, target], check=True, capture_output=True)


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    base = tmp_path_factory.mktemp("parity")
    several = models.dense(str(base / "several"), True, steps=[100, 200], mutate=True)
    os.unlink(os.path.join(several.directory, "checkpoint"))  # no state file: the newest is chosen
    windows = models.dense(str(base / "windows"), True, steps=[100, 200], mutate=True)
    with open(os.path.join(windows.directory, "checkpoint"), "w") as fh:  # written on Windows, names step 100
        fh.write('model_checkpoint_path: "C:\\\\train\\\\run \\"a\\"\\\\model.ckpt-100"\n'
                 'all_model_checkpoint_paths: "C:\\\\train\\\\run \\"a\\"\\\\model.ckpt-100"\n'
                 'all_model_checkpoint_paths: "C:\\\\train\\\\run \\"a\\"\\\\model.ckpt-200"\n')
    models.dense(str(base / "project" / "models"), True)
    models.dense(str(base / "two" / "a"), True)
    models.dense(str(base / "two" / "b"), True)
    models.two_signatures(str(base / "saved"))
    models.training_graph(str(base / "train"), True)
    models.ema_model(str(base / "ema"), True)
    nometa = models.without_meta(str(base / "nometa" / "ckpt"), True, as_text=True, rename="dense")
    return {"graph": nometa.extra["graph"], "nometa": nometa.directory, "missing_graph": str(base / "graph.pb"),"several": several.directory, "prefix": os.path.join(several.directory, "model.ckpt-100"),
            "windows": windows.directory, "nested": str(base / "project"), "two_folders": str(base / "two"),
            "saved": str(base / "saved"), "train": str(base / "train"), "ema": str(base / "ema"),
            "missing": str(base / "nope")}


# (layout, options, expected exit code, what to check: a checkpoint prefix / an error reason)
CELLS = [
    ("several", [], 0, "model.ckpt-200"),
    ("several", ["--step", "100"], 0, "model.ckpt-100"),
    ("prefix", [], 0, "model.ckpt-100"),
    ("windows", [], 0, "model.ckpt-100"),
    ("nested", [], 0, "model.ckpt"),
    ("saved", [], 0, "variables/variables"),
    ("saved", ["--signature", "embed", "--tag", "serve"], 0, "variables/variables"),
    ("train", ["--bind", "is_training=false", "--bind", "keep_prob=1", "--optimize"], 0, None),
    ("ema", ["--ema"], 0, None),
    ("ema", ["--var-map", "w=w/ExponentialMovingAverage", "--target", "tensorflowsharp"], 0, None),
    ("several", ["--outputs", "y", "--exclude-variables", "b", "--target", "tensorflowsharp"], 0, "model.ckpt-200"),
    ("nometa", ["--graph", "{graph}", "--var-map", "dense=w"], 0, "model.ckpt"),
    ("nometa", [], 1, "NO_GRAPH"),
    ("nometa", ["--graph", "{missing_graph}"], 1, "GRAPH_INVALID"),
    ("several", ["--step", "7"], 1, "CHECKPOINT_NOT_FOUND"),
    ("several", ["--step", "99999999999999999999999"], 1, "INVALID_OPTION"),
    ("several", ["--bind", "is_training=maybe"], 1, "INVALID_OPTION"),
    ("several", ["--target", "tf9"], 1, "INVALID_OPTION"),
    ("several", ["--var-map", "w"], 1, "INVALID_OPTION"),
    ("several", ["--outputs", "yy"], 1, "NAME_NOT_IN_GRAPH"),
    ("train", ["--format", "onnx"], 0, None),
    ("several", ["--format", "tflite", "--input-shape", "x=1,3"], 0, "model.ckpt-200"),
    ("several", ["--format", "png"], 1, "INVALID_OPTION"),
    ("several", ["--input-shape", "x=1,3", "--input-shape", "nope=2"], 1, "INVALID_OPTION"),
    ("saved", ["--signature", "nope"], 1, None),
    ("two_folders", [], 1, "CHECKPOINT_NOT_FOUND"),
    ("missing", [], 1, "CHECKPOINT_NOT_FOUND"),
]


def _extension(args) -> str:
    """The -o name's extension for a freeze's --format (a .pb name with --format onnx is refused)."""
    fmt = args[args.index("--format") + 1] if "--format" in args else ""
    return "." + fmt if fmt in ("onnx", "tflite") else ".pb"


def _run(client, command, source, args, out_dir, web_server, cache=None):
    if client == "py":
        argv = [PY, command, source, "--server", web_server.target]
    elif client == "cs":
        argv = [CS, command, source, "--server", web_server.web_url]
    else:
        argv = [CPP, command, source, "--server", web_server.target]
    if command == "freeze":
        argv += ["-o", os.path.join(out_dir, client + _extension(args)), "--manifest",
                 os.path.join(out_dir, client + ".json")]
    env = dict(os.environ, TFFREEZE_CACHE_DIR=cache or os.path.join(out_dir, "cache-" + client))
    return subprocess.run(argv + args, capture_output=True, text=True, timeout=600, env=env)


_PROGRAM = re.compile(r"^tffreeze(-cs|-cpp)?( freeze| inspect)?: ", re.M)
# A command a message suggests (`tffreeze-cs freeze DIR`): each client names itself there.
_SUGGESTED = re.compile(r"`tffreeze(-cs|-cpp)?( |`)")


def _stderr(text: str) -> str:
    """stderr without the program's name at the start of a line, and with the program's name in a
    suggested command spelled one way for every client (and without progress lines: none, it is
    not a tty)."""
    return _SUGGESTED.sub(r"`PROGRAM\2", _PROGRAM.sub("", text))


@pytest.mark.parametrize("cell", range(len(CELLS)), ids=["%s %s" % (c[0], " ".join(c[1])) for c in CELLS])
def test_every_client_gives_the_same_answer(web_server, layouts, tmp_path, cell):
    layout, args, code, expect = CELLS[cell]
    args = [a.format(**layouts) for a in args]
    runs = {c: _run(c, "freeze", layouts[layout], args, str(tmp_path), web_server) for c in ("py", "cs", "cpp")}
    for name, run in runs.items():
        assert run.returncode == code, (name, run.stderr)
    errors = {name: _stderr(run.stderr) for name, run in runs.items()}
    assert errors["cs"] == errors["py"] and errors["cpp"] == errors["py"], errors
    if code != 0:
        last = errors["py"].strip().splitlines()[0]
        assert re.search(r"( \([A-Z_]+\))? \[[A-Z_]+\]$", last), last
        if expect:
            assert re.search(r" \(%s\) \[[A-Z_]+\]$" % expect, last), last
        assert not any(f.endswith((".pb", ".json")) for f in os.listdir(tmp_path)), "nothing written on failure"
        return
    graphs = {c: (tmp_path / (c + _extension(args))).read_bytes() for c in runs}
    manifests = {c: (tmp_path / (c + ".json")).read_bytes() for c in runs}
    assert graphs["cs"] == graphs["py"] and graphs["cpp"] == graphs["py"]
    assert manifests["cs"] == manifests["py"] and manifests["cpp"] == manifests["py"]
    assert str(tmp_path.parent).encode() not in manifests["py"]  # no path of this machine
    assert layouts[layout].encode() not in manifests["py"]
    if expect is not None:
        assert ('"prefix": "%s"' % expect).encode() in manifests["py"], manifests["py"][:400]


@pytest.mark.parametrize("layout,args", [("windows", []), ("saved", ["--signature", "embed"]),
                                         ("ema", ["--ema"]), ("nested", [])])
def test_every_client_inspects_alike(web_server, layouts, tmp_path, layout, args):
    for extra in ([], ["--json"]):
        runs = {c: _run(c, "inspect", layouts[layout], args + extra, str(tmp_path), web_server)
                for c in ("py", "cs", "cpp")}
        for name, run in runs.items():
            assert run.returncode == 0, (name, run.stderr)
        assert runs["cs"].stdout == runs["py"].stdout and runs["cpp"].stdout == runs["py"].stdout
        assert runs["py"].stdout.strip()
    assert "available:  model.ckpt-100, model.ckpt-200" in _run("cs", "inspect", layouts["windows"], [], str(tmp_path),
                                                                web_server).stdout


def test_a_file_changed_in_place_with_its_mtime_put_back_is_hashed_again_in_every_client(web_server, layouts, tmp_path):
    """The digest cache is keyed on the file's stat, ctime included: an unchanged re-freeze is answered
    from it, and a data file's bytes changed in place with its mtime put back (as `tar --mtime`
    unpacks a release; trial 11, finding 1) are read again, sent, and refused as corrupt, as they
    are with the cache off. (It used to be frozen with the cached digest: the old weights, exit 0.)"""
    from tffreeze import cache as py_cache

    src = tmp_path / "src"
    shutil.copytree(layouts["several"], src)
    stamp = 1_600_000_000 * 10 ** 9
    for name in os.listdir(src):
        os.utime(src / name, ns=(stamp, stamp))
    data = next(src / n for n in os.listdir(src) if n.startswith("model.ckpt-200.data"))
    first = {}
    for client in ("py", "cs", "cpp"):
        run = _run(client, "freeze", str(src), [], str(tmp_path), web_server, cache=str(tmp_path / "cache"))
        assert run.returncode == 0, (client, run.stderr)
        first[client] = (tmp_path / (client + ".pb")).read_bytes()
    for client in ("py", "cs", "cpp"):  # unchanged: the same graph
        again = _run(client, "freeze", str(src), [], str(tmp_path), web_server, cache=str(tmp_path / "cache"))
        assert again.returncode == 0 and (tmp_path / (client + ".pb")).read_bytes() == first[client], client
    with open(tmp_path / "cache" / py_cache.DIGESTS) as fh:  # the Python client's entry for it, by its stat
        assert os.path.realpath(data) in fh.read()
    with open(data, "r+b") as fh:  # other bytes, same size, same inode, same mtime
        raw = bytearray(fh.read())
        fh.seek(0)
        fh.write(bytes(b ^ 0x55 for b in raw[:8]) + bytes(raw[8:]))
    os.utime(data, ns=(stamp, stamp))
    for cache in (str(tmp_path / "cache"), "off"):
        for client in ("py", "cs", "cpp"):
            fresh = _run(client, "freeze", str(src), [], str(tmp_path), web_server, cache=cache)
            assert fresh.returncode == 1 and "(CHECKPOINT_CORRUPT)" in fresh.stderr, (client, cache, fresh.stderr)


def _big(directory: str, seed: int) -> str:
    """A checkpoint whose frozen graph is mostly one 2 MiB variable (over the inline limit): the
    server offers a recipe."""
    tf, tf1 = models.tf, models.tf1
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 1 << 17], name="x")
        w = tf1.get_variable("w", initializer=tf.constant(
            np.random.RandomState(seed).standard_normal((1 << 17, 4)).astype(np.float32)))
        tf.matmul(x, w, name="y")
        with tf1.Session(graph=g) as s:
            s.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(s, os.path.join(directory, "model.ckpt"))
    return directory


@pytest.mark.parametrize("client", ["py", "cs", "cpp"])
def test_every_client_assembles_a_big_graph_from_its_own_files(web_server, tmp_path, client):
    """The assembly recipe serves every client: a first freeze (an early recipe: literal bytes
    and ranges of the uploaded files) and a cached one (a late recipe: ranges of the stored
    graph too) are both built from the local checkpoint, not downloaded, and equal the graph
    the server stored."""
    src = _big(str(tmp_path / "src"), {"py": 1, "cs": 2, "cpp": 3}[client])
    first = _run(client, "freeze", src, [], str(tmp_path), web_server)
    assert first.returncode == 0, first.stderr
    assert "assembled from the local files" in first.stdout, first.stdout
    built = (tmp_path / (client + ".pb")).read_bytes()
    os.unlink(tmp_path / (client + ".pb"))
    again = _run(client, "freeze", src, [], str(tmp_path), web_server)
    if client == "py":  # Python links a graph it received before from its results cache
        assert again.returncode == 0 and "taken from the local results cache" in again.stdout, again.stdout
        os.unlink(tmp_path / "py.pb")
        again = _run(client, "freeze", src, [], str(tmp_path), web_server, cache="off")
    assert again.returncode == 0 and "assembled from the local files" in again.stdout, again.stdout
    assert (tmp_path / (client + ".pb")).read_bytes() == built
    from tffreeze import FreezeClient

    with FreezeClient(web_server.target) as native:
        stored = native.freeze(src)
    assert stored.graph_bytes == built
    (y,) = models.run_frozen(built, {"x:0": np.ones((1, 1 << 17), np.float32)}, ["y:0"])
    assert y.shape == (1, 4)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]


_TF_NOISE = re.compile(r"absl::InitializeLog|cuda|cuInit|cpu_feature_guard|^[IWEF]\d{4} ", re.I | re.M)


def test_run_prints_no_tensorflow_log_lines_in_any_client(web_server, layouts, tmp_path):
    """`run` in every client: TensorFlow's own log lines (absl's start-up warning, CUDA probing
    on a CPU machine, CPU features) are kept off stderr unless --verbose asks for them."""
    from tffreeze import FreezeClient

    model = os.path.join(str(tmp_path), "m.pb")
    with FreezeClient(web_server.target) as client:
        client.freeze(layouts["several"], output_path=model)
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    args = ["run", model, "--input", "x:0=%s" % (tmp_path / "x.npy"), "--output", "y:0=%s" % (tmp_path / "y.npy")]
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.pop("TFFREEZE_VERBOSE", None)
    for binary in (PY, CS, CPP):
        out = subprocess.run([binary] + args, capture_output=True, text=True, timeout=600, env=env)
        assert out.returncode == 0, (binary, out.stderr)
        assert not _TF_NOISE.search(out.stderr), (binary, out.stderr)
        assert "y:0 -> " in out.stdout
        loud = subprocess.run([binary] + args + ["--verbose"], capture_output=True, text=True, timeout=600, env=env)
        assert loud.returncode == 0 and _TF_NOISE.search(loud.stderr), (binary, loud.stderr)  # asked for: shown


def test_a_tensorflow_library_that_does_not_load_is_tagged_alike(web_server, layouts, tmp_path):
    """Trial 10, finding 14: C# tagged a missing or broken --libtensorflow [TENSORFLOW], C++
    [NOT_FOUND] and [FAILED_PRECONDITION]; both now say the same line."""
    from tffreeze import FreezeClient

    model = os.path.join(str(tmp_path), "m.pb")
    with FreezeClient(web_server.target) as client:
        client.freeze(layouts["several"], output_path=model)
    np.save(tmp_path / "x.npy", np.ones((2, 3), np.float32))
    (tmp_path / "broken.so").write_bytes(b"not a library")
    for lib, kind in ((str(tmp_path / "absent.so"), "[NOT_FOUND]"), (str(tmp_path / "broken.so"), "[FAILED_PRECONDITION]")):
        said = []
        for binary in (CS, CPP):
            out = subprocess.run([binary, "run", model, "--input", "x:0=%s" % (tmp_path / "x.npy"), "--output", "y:0",
                                  "--libtensorflow", lib], capture_output=True, text=True, timeout=600)
            assert out.returncode == 1 and out.stderr.rstrip().endswith(kind), (binary, out.stderr)
            said.append(re.sub(r"^tffreeze-(cs|cpp) ", "", out.stderr))
        assert said[0] == said[1], said


def test_outputs_are_plain_files_of_the_users_umask_in_every_client(web_server, layouts, tmp_path):
    """The .pb and the manifest: mode 0666 less the umask (0644 under 022), one link (never a
    link into a cache), also when a client takes the graph from its results cache; a missing
    output folder is refused before anything is hashed or sent, the same way in every client."""
    import stat

    old = os.umask(0o022)
    try:
        for client in ("py", "cs", "cpp"):
            for attempt in range(2):  # the second: Python copies from its results cache
                out = tmp_path / ("%s.pb" % client)
                if out.exists():
                    out.unlink()
                run = _run(client, "freeze", layouts["windows"], [], str(tmp_path), web_server)
                assert run.returncode == 0, run.stderr
                for path in (out, tmp_path / ("%s.json" % client)):
                    st = os.stat(path)
                    assert stat.S_IMODE(st.st_mode) == 0o644 and st.st_nlink == 1, (client, attempt, path,
                                                                                    oct(st.st_mode), st.st_nlink)
    finally:
        os.umask(old)
    lines = {}
    for client, binary in (("py", PY), ("cs", CS), ("cpp", CPP)):
        address = web_server.web_url if client == "cs" else web_server.target
        run = subprocess.run([binary, "freeze", layouts["windows"], "-o", str(tmp_path / "no" / "such" / "m.pb"),
                              "--server", address], capture_output=True, text=True, timeout=600)
        assert run.returncode == 1, run.stderr
        lines[client] = _stderr(run.stderr)
    assert lines["py"] == lines["cs"] == lines["cpp"], lines
    assert lines["py"].startswith("-o %s: the folder %s does not exist: create it, or give -o another path" % (
        tmp_path / "no" / "such" / "m.pb", tmp_path / "no" / "such")), lines["py"]
    assert "[NOT_FOUND]" in lines["py"] and not (tmp_path / "no").exists()


def test_the_python_results_cache_is_bounded(web_server, layouts, tmp_path):
    """$TFFREEZE_CACHE_MAX_BYTES bounds the results cache; the least recently used graphs go first."""
    cache = tmp_path / "cache"
    limit = 1 << 20
    env = dict(os.environ, TFFREEZE_CACHE_DIR=str(cache), TFFREEZE_CACHE_MAX_BYTES=str(limit))
    (cache / "results").mkdir(parents=True)
    old = cache / "results" / ("0" * 64)
    old.write_bytes(b"\0" * (limit - 10))  # an earlier graph, used long ago
    os.utime(old, (1_600_000_000, 1_600_000_000))
    run = subprocess.run([PY, "freeze", layouts["windows"], "-o", str(tmp_path / "o.pb"), "--server",
                          web_server.target], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    kept = os.listdir(cache / "results")
    sha = hashlib.sha256((tmp_path / "o.pb").read_bytes()).hexdigest()
    assert kept == [sha], kept  # the new graph kept, the old one trimmed to make room
    assert sum(os.path.getsize(cache / "results" / k) for k in kept) <= limit
