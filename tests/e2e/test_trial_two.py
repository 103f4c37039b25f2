"""Issue 34, the second new-user trial ("The first week"), in every client it concerns: what
misled (M2: an -o name of another kind than --format writes, and `run` choosing by the name
alone; M8: the gRPC and the gRPC-Web addresses mixed up; M10: a folder given to --graph; M11: a
folder or a missing file given to run) and the rough edges aligned beside them (-o given twice,
--input without NAME=, an input not fed, a checkpoint's .meta given to run, --version). Each
client prints the same line (its own program name normalised), with the same exit code."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess

import numpy as np
import pytest

import models
import users
from test_parity import CPP, CS, PY, built  # noqa: F401  (built: the clients, made once)

CLIENTS = {"py": PY, "cs": CS, "cpp": CPP}
# The program's name (and command) before a message, argparse's "error: ", and a suggested command's.
_PREFIX = re.compile(r"^tffreeze(-cs|-cpp)?( freeze| inspect| run)?: (error: )?")
_SUGGESTED = re.compile(r"`tffreeze(-cs|-cpp)? ")


def _said(stderr: str) -> str:
    """The message lines of stderr: without the program's name, argparse's usage block, the
    "(see ... --help)" line and C#/C++'s "(TensorFlow VERSION)" line after a run."""
    lines = []
    for line in stderr.splitlines():
        if line.startswith(("usage:", " ", "(see tffreeze", "(TensorFlow ")) or not line.strip():
            continue
        lines.append(_SUGGESTED.sub("`PROGRAM ", _PREFIX.sub("", line)))
    return "\n".join(lines)


def _run(argv, timeout=600):
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def base(web_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("trial2")
    ckpt = models.dense(str(base / "ck"), True)
    for name, fmt in (("m.pb", []), ("o.onnx", ["--format", "onnx"])):
        done = _run([PY, "freeze", ckpt.directory, "-o", base / name, "--manifest", base / (name + ".json"),
                     "--server", web_server.target, "--quiet"] + fmt)
        assert done.returncode == 0, done.stderr
    shutil.copy(base / "o.onnx", base / "onnx_named.pb")  # ONNX bytes in a .pb, as `-o o.pb --format onnx` wrote
    shutil.copy(base / "m.pb", base / "graph_named.onnx")  # a GraphDef in a .onnx, as `-o o.onnx` wrote
    np.save(str(base / "x.npy"), np.ones((2, 3), np.float32))
    (base / "notes.npy").write_text("1,2,3\n4,5,6\n")  # text, named .npy
    (base / "outdir").mkdir()
    return {"base": str(base), "ck": ckpt.directory, "pb": str(base / "m.pb"), "manifest": str(base / "m.pb.json"),
            "onnx_manifest": str(base / "o.onnx.json")}


# -- M2: -o's extension and --format --------------------------------------------------------------

FORMAT_CLASHES = [
    ("pb-onnx", "o.pb", ["--format", "onnx"],
     "-o {out}/o.pb is named for a frozen GraphDef (.pb) but --format onnx writes an ONNX model: name it "
     "{out}/o.onnx, or drop --format onnx"),
    ("onnx-default", "o3.onnx", [],
     "-o {out}/o3.onnx is named for an ONNX model (.onnx) but freeze without --format writes a frozen GraphDef: "
     "name it {out}/o3.pb, or give --format onnx"),
    ("tflite-onnx", "t.tflite", ["--format", "onnx"],
     "-o {out}/t.tflite is named for a TensorFlow Lite model (.tflite) but --format onnx writes an ONNX model: "
     "name it {out}/t.onnx, or give --format tflite"),
    ("pb-graphdef-upper", "g.PB", ["--format", "tflite"],
     "-o {out}/g.PB is named for a frozen GraphDef (.PB) but --format tflite writes a TensorFlow Lite model: "
     "name it {out}/g.tflite, or drop --format tflite"),
]


@pytest.mark.parametrize("case", FORMAT_CLASHES, ids=[c[0] for c in FORMAT_CLASHES])
def test_an_output_name_of_another_kind_than_the_format_is_a_usage_error_before_any_upload(base, tmp_path, case):
    """Refused with exit 2 against a server that is not there: nothing was listed, hashed or sent."""
    _, name, fmt, expect = case
    lines = {}
    for client, program in CLIENTS.items():
        dead = "http://127.0.0.1:1" if client == "cs" else "127.0.0.1:1"
        r = _run([program, "freeze", base["ck"], "-o", tmp_path / name, "--server", dead] + fmt)
        assert r.returncode == 2, (client, r.stderr)
        lines[client] = _said(r.stderr)
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == expect.format(out=tmp_path), lines["py"]
    assert os.listdir(tmp_path) == []


def test_other_output_names_are_taken_as_they_are(web_server, base, tmp_path):
    for client, program in CLIENTS.items():
        server = web_server.web_url if client == "cs" else web_server.target
        r = _run([program, "freeze", base["ck"], "-o", tmp_path / (client + ".model"), "--format", "onnx",
                  "--server", server, "--quiet"])
        assert r.returncode == 0, (client, r.stderr)
    assert (tmp_path / "py.model").read_bytes() == (tmp_path / "cs.model").read_bytes() == \
        (tmp_path / "cpp.model").read_bytes()


def test_run_decides_by_the_manifest_and_the_bytes_and_says_a_misleading_name(base):
    x = "x=%s/x.npy" % base["base"]
    # A GraphDef named .onnx: every client runs it (it is a GraphDef) and says the name misleads.
    runs = {c: _run([p, "run", "%s/graph_named.onnx" % base["base"], "--input", x, "--output", "y"])
            for c, p in CLIENTS.items()}
    for client, r in runs.items():
        assert r.returncode == 0, (client, r.stderr)
    warned = {c: _said(r.stderr) for c, r in runs.items()}
    assert warned["cs"] == warned["py"] and warned["cpp"] == warned["py"], warned
    assert warned["py"] == "warning: {0}/graph_named.onnx holds a frozen GraphDef, not an ONNX model as its name " \
                           "says: rename it to {0}/graph_named.pb".format(base["base"]), warned["py"]
    assert runs["cs"].stdout == runs["py"].stdout == runs["cpp"].stdout
    # ONNX bytes named .pb, with their manifest: Python runs them in onnxruntime; C# and C++ refuse,
    # saying what the file holds (not "Invalid GraphDef").
    onnx = "%s/onnx_named.pb" % base["base"]
    runs = {c: _run([p, "run", onnx, "--manifest", base["onnx_manifest"], "--input", x]) for c, p in CLIENTS.items()}
    mismatch = "%s holds an ONNX model, not a frozen GraphDef as its name says" % onnx
    assert runs["py"].returncode == 0 and _said(runs["py"].stderr) == "warning: %s: rename it to %s/onnx_named.onnx" % (
        mismatch, base["base"]), runs["py"].stderr
    assert runs["py"].stdout.startswith("y:0 float32 [2, 2] ")
    refused = {}
    for client in ("cs", "cpp"):
        assert runs[client].returncode == 1, (client, runs[client].stderr)
        refused[client] = _said(runs[client].stderr).replace("tffreeze-" + client, "PROGRAM")
    assert refused["cs"] == refused["cpp"], refused
    assert refused["cs"] == mismatch + ": PROGRAM runs frozen GraphDef .pb files only. Run .onnx and .tflite models " \
        "with the Python client (`PROGRAM run %s ...`, the same flags), or freeze without --format to get a .pb for " \
        "PROGRAM [INVALID_ARGUMENT]" % onnx, refused["cs"]
    # Without the manifest, the bytes decide: the same in Python (it ran the ONNX model, not TensorFlow).
    plain = _run([PY, "run", onnx, "--input", x, "--output", "y"])
    assert plain.returncode == 0 and plain.stdout.startswith("y float32 [2, 2] "), plain.stderr


# -- M2 (run), M11 and the rough edges of run: one line in every client ---------------------------

RUN_CASES = [
    ("manifest-of-another-kind", "{base}/graph_named.onnx", ["--manifest", "{onnx_manifest}", "--input", "x={base}/x.npy"],
     1, "{base}/graph_named.onnx holds a frozen GraphDef but --manifest {onnx_manifest} describes an ONNX model: give "
        "the manifest written with it [INVALID_ARGUMENT]"),
    ("input-folder", "{pb}", ["--manifest", "{manifest}", "--input", "x={ck}"], 1,
     "--input x={ck} is a folder: give an .npy file [INVALID_ARGUMENT]"),
    ("input-missing", "{pb}", ["--input", "x={base}/nothere.npy", "--output", "y"], 1,
     "--input x={base}/nothere.npy does not exist [NOT_FOUND]"),
    ("input-not-npy", "{pb}", ["--input", "x={base}/notes.npy", "--output", "y"], 1,
     "--input x={base}/notes.npy is not a .npy file (it lacks NumPy's header): save the array with numpy.save "
     "[INVALID_ARGUMENT]"),
    ("model-folder", "{base}/outdir", ["--input", "x={base}/x.npy", "--output", "probs"], 1,
     "MODEL {base}/outdir is a folder: give the frozen .pb file [INVALID_ARGUMENT]"),
    ("model-missing", "{base}/nothere.pb", ["--input", "x={base}/x.npy", "--output", "y"], 1,
     "MODEL {base}/nothere.pb does not exist [NOT_FOUND]"),
    ("not-fed-manifest", "{pb}", ["--manifest", "{manifest}"], 1,
     "input x:0 is not fed: give --input x=FILE.npy [INVALID_ARGUMENT]"),
    ("not-fed", "{pb}", ["--output", "y"], 1, "input x:0 is not fed: give --input x=FILE.npy [INVALID_ARGUMENT]"),
    ("checkpoint-meta", "{ck}/model.ckpt.meta", ["--input", "x={base}/x.npy", "--output", "y"], 1,
     "{ck}/model.ckpt.meta is a checkpoint's MetaGraphDef (its graph without the variables' values), not a frozen "
     "graph: freeze the checkpoint first (`PROGRAM freeze {ck}/model.ckpt -o model.pb`) and run the .pb "
     "[INVALID_ARGUMENT]"),
    ("input-without-name", "{pb}", ["--input", "{base}/x.npy", "--output", "y"], 2,
     "--input '{base}/x.npy': write NAME=FILE.npy (NAME: the tensor it feeds, e.g. --input x={base}/x.npy)"),
]


@pytest.mark.parametrize("case", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_every_client_words_a_run_mistake_alike(base, case):
    _, model, args, code, expect = case
    lines = {}
    for client, program in CLIENTS.items():
        r = _run([program, "run", model.format(**base)] + [a.format(**base) for a in args])
        assert r.returncode == code, (client, r.stderr)
        assert "Traceback" not in r.stderr and "terminate called" not in r.stderr, r.stderr
        lines[client] = _said(r.stderr)
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == expect.format(**base), lines["py"]
    assert os.listdir(os.path.join(base["base"], "outdir")) == []


# -- M8: the two addresses ------------------------------------------------------------------------

def test_each_client_recognises_the_other_address(web_server, base):
    """`tffreeze serve --port 0 --web-port 0` prints both; each client given the other one says so."""
    web_host_port = web_server.web_url[len("http://"):]
    lines = {}
    for client in ("py", "cpp"):  # gRPC clients: an http:// URL, and the gRPC-Web port as HOST:PORT
        url = _run([CLIENTS[client], "inspect", base["ck"], "--server", web_server.web_url])
        port = _run([CLIENTS[client], "inspect", base["ck"], "--server", web_host_port, "--timeout", "30"])
        assert url.returncode == 1 and port.returncode == 1, (client, url.stderr, port.stderr)
        lines[client] = (_said(url.stderr).replace("tffreeze-cpp speaks", "tffreeze speaks"), _said(port.stderr))
    assert lines["cpp"] == lines["py"], lines
    assert lines["py"][0] == "--server %s: tffreeze speaks gRPC: give HOST:PORT (the server's 'listening on' " \
        "address), not an http:// URL (that is the gRPC-Web address tffreeze-cs and the page use) " \
        "[INVALID_ARGUMENT]" % web_server.web_url, lines["py"][0]
    assert lines["py"][1] == "%s answered with HTTP/1: it looks like the gRPC-Web port; give the 'listening on' " \
        "port (--server HOST:PORT) [UNAVAILABLE]" % web_host_port, lines["py"][1]
    for given in (web_server.target, "http://" + web_server.target):  # tffreeze-cs: the gRPC port
        r = _run([CS, "inspect", base["ck"], "--server", given, "--timeout", "30"])
        assert r.returncode == 1, r.stderr
        assert _said(r.stderr) == "http://%s answered with HTTP/2 only: it looks like the gRPC port (the 'listening " \
            "on' address tffreeze and tffreeze-cpp use); tffreeze-cs needs the gRPC-Web address: give --server " \
            "http://HOST:WEB_PORT (the 'gRPC-Web on' address of a server started with --web-port) [UNAVAILABLE]" % (
                web_server.target), r.stderr


# -- M10, -o twice, --version ---------------------------------------------------------------------

def test_a_folder_given_to_graph_is_named_a_folder(web_server, base, tmp_path):
    lines = {}
    for client, program in CLIENTS.items():
        server = web_server.web_url if client == "cs" else web_server.target
        r = _run([program, "freeze", base["ck"], "-o", tmp_path / "a.pb", "--graph", base["ck"], "--server", server])
        assert r.returncode == 1, (client, r.stderr)
        lines[client] = _said(r.stderr)
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == "--graph: %s is a folder: --graph takes a file (a GraphDef or MetaGraphDef) " \
                          "(GRAPH_INVALID) [INVALID_ARGUMENT]" % base["ck"], lines["py"]
    assert os.listdir(tmp_path) == []


def test_o_and_output_file_together_are_a_usage_error(base, tmp_path):
    for client, program in CLIENTS.items():
        r = _run([program, "freeze", base["ck"], "-o", tmp_path / "a.pb", "--output-file", tmp_path / "b.pb",
                  "--server", "http://127.0.0.1:1" if client == "cs" else "127.0.0.1:1"])
        assert r.returncode == 2, (client, r.stderr)
        assert _said(r.stderr) == "freeze writes one graph: give -o/--output-file once", (client, r.stderr)
    assert os.listdir(tmp_path) == []


USAGE_CASES = [
    ("no-o", ["freeze", "{ck}"], "freeze needs -o OUT.pb"),
    ("no-source", ["inspect"], "inspect takes one SOURCE"),
    ("two-sources", ["freeze", "{ck}", "{ck}", "-o", "{base}/u.pb"], "freeze takes one SOURCE"),
    ("no-model", ["run"], "run takes one MODEL.pb"),
    ("two-models", ["run", "{pb}", "{pb}"], "run takes one MODEL.pb"),
    ("value-missing", ["freeze", "{ck}", "-o", "{base}/u.pb", "--step"], "--step needs a value: --step N"),
    ("value-is-a-flag", ["inspect", "{ck}", "--timeout", "--json"], "--timeout needs a value: --timeout SECONDS"),
    ("o-value-missing", ["freeze", "{ck}", "-o"], "-o needs a value: -o OUT.pb"),
    ("run-value-missing", ["run", "{pb}", "--output"], "--output needs a value: --output NAME[=FILE.npy]"),
    ("unknown-option", ["freeze", "{ck}", "-o", "{base}/u.pb", "--bogus=3"], "unknown option --bogus"),
    ("switch-with-value", ["freeze", "{ck}", "-o", "{base}/u.pb", "--ema=1"], "--ema takes no value"),
    ("abbreviation", ["freeze", "{ck}", "-o", "{base}/u.pb", "--manif", "m.json"],
     "--manif is not a flag of `PROGRAM freeze`: flags are written in full (--manifest)"),
]


@pytest.mark.parametrize("case", USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_a_usage_error_is_one_line_and_where_the_help_is_in_every_client(base, case):
    """No usage block (argparse's, in Python): the problem in one line, worded alike, then the
    pointer to --help; exit 2, against a server that is not there (nothing was sent)."""
    _, argv, expect = case
    for client, program in CLIENTS.items():
        r = _run([program] + [a.format(**base) for a in argv] + ["--server", "127.0.0.1:1"] * (argv[0] != "run"))
        assert r.returncode == 2, (client, r.stderr)
        name = os.path.basename(program)
        assert r.stderr.splitlines() == ["%s %s: %s" % (name, argv[0], expect.replace("PROGRAM", name)),
                                         "(see %s --help)" % name], (client, r.stderr)
    assert not os.path.exists(os.path.join(base["base"], "u.pb"))


def test_a_non_ascii_path_is_printed_as_it_is_without_a_locale(web_server, base, tmp_path):
    """LANG and LC_* unset (the C locale, as in a bare container): every client prints the path
    as given (UTF-8), in an error and in a freeze's summary; C# on Mono printed "caf?"."""
    env = {k: v for k, v in os.environ.items() if k != "LANG" and not k.startswith("LC_")}
    folder = tmp_path / "café"
    shutil.copytree(base["ck"], folder / "ck")
    lines = {}
    for client, program in CLIENTS.items():
        server = web_server.web_url if client == "cs" else web_server.target
        missing = subprocess.run([program, "inspect", str(folder / "nöpe"), "--server", server], capture_output=True,
                                 timeout=600, env=env)
        assert missing.returncode == 1, (client, missing.stderr)
        out = folder / ("ö-%s.pb" % client)
        done = subprocess.run([program, "freeze", str(folder / "ck"), "-o", str(out), "--server", server],
                              capture_output=True, timeout=600, env=env)
        assert done.returncode == 0, (client, done.stderr)
        lines[client] = (_said(missing.stderr.decode("utf-8")),
                         done.stdout.decode("utf-8").splitlines()[0].replace("ö-%s.pb" % client, "ö.pb"))
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"][0] == "%s does not exist (CHECKPOINT_NOT_FOUND) [NOT_FOUND]" % (folder / "nöpe"), lines["py"]
    assert lines["py"][1].startswith("wrote %s (" % (folder / "ö.pb")), lines["py"]


@pytest.mark.parametrize("flag", ["-o", "--manifest"])
def test_a_read_only_output_is_refused_and_left_as_it_was(base, tmp_path, flag):
    """An existing file no one may write (mode 0444) is not silently replaced: refused before
    anything is sent (the server here is not there), naming the flag, the file and the fixes;
    nothing is written beside it."""
    lines = {}
    for client, program in CLIENTS.items():
        kept = tmp_path / (client + (".pb" if flag == "-o" else ".json"))
        kept.write_text("the user's\n")
        kept.chmod(0o444)
        other = (["--manifest", str(tmp_path / (client + ".json"))] if flag == "-o"
                 else ["-o", str(tmp_path / (client + ".pb"))])
        r = _run([program, "freeze", base["ck"], flag, kept, "--server", "http://127.0.0.1:1" if client == "cs"
                  else "127.0.0.1:1"] + other)
        assert r.returncode == 1, (client, r.stderr)
        lines[client] = _said(r.stderr).replace(client + ".", "FILE.")
        assert kept.read_text() == "the user's\n" and kept.stat().st_mode & 0o777 == 0o444
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    shown = tmp_path / ("FILE.pb" if flag == "-o" else "FILE.json")
    assert lines["py"] == "%s %s is read-only: make it writable (chmod u+w %s), or give %s another path " \
                          "[PERMISSION_DENIED]" % (flag, shown, shown, flag), lines["py"]
    assert sorted(os.listdir(tmp_path)) == sorted(c + (".pb" if flag == "-o" else ".json") for c in CLIENTS)


@pytest.mark.parametrize("flag", ["-o", "--manifest"])
@pytest.mark.parametrize("owner", ["root-in-my-folder", "other-in-sticky-folder"])
def test_another_users_output_is_refused_with_what_works_and_left_as_it_was(base, flag, owner):
    """An existing file of another user's that an ordinary user may not write: not called
    read-only with a chmod its owner alone may run, but named as another user's, with what this
    user can do: another path, or (in a folder of theirs; in a sticky one only its owner may)
    removing it; the same line and exit code in every client, and the file left as it was."""
    me = users.ordinary()
    if not me.switch:
        users.require_or_skip("a file of another user's can only be made when the tests run as root")
    source = me.folder()
    shutil.copytree(base["ck"], os.path.join(source, "ck"))
    me.give(source)
    if owner == "root-in-my-folder":
        folder, uid = me.folder(), 0
    else:
        folder, uid = me.folder(), users.ordinary(users.SECOND).uid
        os.chown(folder, 0, 0)
        os.chmod(folder, 0o1777)  # like /tmp: only an entry's owner (or the folder's) may remove it
    try:
        lines, ext = {}, (".pb" if flag == "-o" else ".json")
        for client, program in CLIENTS.items():
            kept = os.path.join(folder, client + ext)
            with open(kept, "w") as f:
                f.write("another user's\n")
            os.chown(kept, uid, uid)
            os.chmod(kept, 0o644)
            other = (["--manifest", os.path.join(folder, client + ".json")] if flag == "-o"
                     else ["-o", os.path.join(folder, client + ".pb")])
            r = me.run([program, "freeze", os.path.join(source, "ck"), flag, kept, "--server",
                        "http://127.0.0.1:1" if client == "cs" else "127.0.0.1:1"] + other)
            assert r.returncode == 1, (client, r.stderr)
            lines[client] = _said(r.stderr).replace(client + ".", "FILE.")
            st = os.stat(kept)
            assert open(kept).read() == "another user's\n" and st.st_mode & 0o7777 == 0o644 and st.st_uid == uid
        assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
        shown = os.path.join(folder, "FILE" + ext)
        expect = "%s %s belongs to another user, %s (uid %d), and you may not write it: give %s another path" % (
            flag, shown, pwd.getpwuid(uid).pw_name, uid, flag)
        if owner == "root-in-my-folder":
            expect += ", or remove it (rm %s)" % shown
        assert lines["py"] == expect + " [PERMISSION_DENIED]", lines["py"]
        assert sorted(os.listdir(folder)) == sorted(c + ext for c in CLIENTS)
        # What is advised works, and what is not would not have: chmod is the owner's alone.
        kept = os.path.join(folder, "py" + ext)
        assert me.run(["chmod", "u+w", kept]).returncode != 0
        removed = me.run(["rm", kept])
        assert (removed.returncode == 0) == (owner == "root-in-my-folder"), removed.stderr
        assert os.path.exists(kept) == (owner != "root-in-my-folder")
    finally:
        shutil.rmtree(folder)
        shutil.rmtree(source)


def test_every_client_prints_the_one_version():
    from tffreeze import __version__

    for client, program in CLIENTS.items():
        r = _run([program, "--version"], timeout=60)
        assert r.returncode == 0, (client, r.stderr)
        assert r.stdout.strip() == "%s %s" % (os.path.basename(program), __version__), r.stdout


def test_csharp_says_it_does_not_use_the_grpc_servers_variable(tmp_path):
    """The third trial: with $TFFREEZE_SERVER set (the gRPC clients' server), tffreeze-cs went to
    the local server without a word. It still can only speak gRPC-Web, and now it says so."""
    import models as _models

    ckpt = _models.dense(str(tmp_path / "d"), True)
    env = dict(os.environ, TFFREEZE_SERVER="127.0.0.1:1", TFFREEZE_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("TFFREEZE_WEB_SERVER", None)
    try:
        out = subprocess.run([CS, "inspect", ckpt.directory], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr
        assert "tffreeze-cs: note: $TFFREEZE_SERVER (127.0.0.1:1) is the gRPC address tffreeze and tffreeze-cpp " \
               "use; tffreeze-cs speaks gRPC-Web: set $TFFREEZE_WEB_SERVER=http://HOST:WEB_PORT" in out.stderr, out.stderr
    finally:
        subprocess.run([PY, "local-server", "stop"], env=env, capture_output=True, timeout=120)
