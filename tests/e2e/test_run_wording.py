"""Issue 34, the renewed new-user trial: `run` in every client. A wrong input or output is named
as the user typed it, with the fix: a folder given for an output suggests NAME.npy in it, an .npy
of another dtype is refused (no client casts: a cast can lose values) with the astype that fixes
it, a shape the input does not take is refused before TensorFlow runs, and a misspelt tensor gets
"did you mean" (not the list of placeholders). The three clients print the same line."""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest

import models
from test_parity import CPP, CS, PY, built  # noqa: F401  (built: the clients, made once)

_PROGRAM = re.compile(r"^tffreeze(-cs|-cpp)? run: ", re.M)


@pytest.fixture(scope="module")
def frozen(web_server, tmp_path_factory):
    base = tmp_path_factory.mktemp("runwords")
    ckpt = models.dense(str(base / "ckpt"), True)
    pb, manifest = str(base / "m.pb"), str(base / "m.json")
    done = subprocess.run([PY, "freeze", ckpt.directory, "-o", pb, "--manifest", manifest, "--server",
                           web_server.target, "--quiet"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    for name, array in {"x": np.ones((2, 3), np.float32), "x64": np.ones((2, 3)),
                        "x5": np.ones((2, 5), np.float32)}.items():
        np.save(str(base / (name + ".npy")), array)
    (base / "outdir").mkdir()
    return {"pb": pb, "manifest": manifest, "base": str(base)}


# (id, arguments after MODEL, with {base}; the line every client prints, after the program name)
CASES = [
    ("folder-output", ["--input", "x={base}/x.npy", "--output", "y={base}/outdir"],
     "--output y={base}/outdir is a folder: give a file name (e.g. {base}/outdir/y.npy) [INVALID_ARGUMENT]"),
    ("float64-input", ["--input", "x={base}/x64.npy", "--output", "y"],
     "input x takes float32 but the .npy holds float64: save it as float32 (numpy: a.astype('float32')) "
     "[INVALID_ARGUMENT]"),
    ("float64-input-manifest", ["--manifest", "{manifest}", "--input", "x={base}/x64.npy", "--output", "y"],
     "input x takes float32 but the .npy holds float64: save it as float32 (numpy: a.astype('float32')) "
     "[INVALID_ARGUMENT]"),
    ("shape", ["--input", "x={base}/x5.npy", "--output", "y"],
     "input x takes shape [-1, 3] (-1: any size) but the .npy holds [2, 5] [INVALID_ARGUMENT]"),
    ("shape-manifest", ["--manifest", "{manifest}", "--input", "x={base}/x5.npy", "--output", "y"],
     "input x takes shape [-1, 3] (-1: any size) but the .npy holds [2, 5] [INVALID_ARGUMENT]"),
    ("misspelt-output", ["--input", "x={base}/x.npy", "--output", "yy"],
     "tensor 'yy' is not in the graph; did you mean 'y'? [NOT_FOUND]"),
    ("misspelt-input", ["--input", "xx={base}/x.npy", "--output", "y"],
     "tensor 'xx' is not in the graph; did you mean 'x'? [NOT_FOUND]"),
    ("nothing-close", ["--input", "x={base}/x.npy", "--output", "zzzz"],
     "tensor 'zzzz' is not in the graph [NOT_FOUND]"),
    ("nothing-close-input", ["--input", "nope={base}/x.npy", "--output", "y"],
     "tensor 'nope' is not in the graph; its placeholders: x [NOT_FOUND]"),
    ("misspelt-manifest-output", ["--manifest", "{manifest}", "--input", "x={base}/x.npy", "--output", "yy"],
     "'yy' is not among the manifest's outputs (y:0) [NOT_FOUND]"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_client_words_a_run_mistake_the_same_way(frozen, case):
    name, args, expect = case
    args = [a.format(**frozen) for a in args]
    lines = {}
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):
        done = subprocess.run([program, "run", frozen["pb"]] + args, capture_output=True, text=True, timeout=600)
        assert done.returncode == 1, (client, done.stdout, done.stderr)
        lines[client] = _PROGRAM.sub("", done.stderr).strip()
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == expect.format(**frozen), lines["py"]
    assert os.listdir(os.path.join(frozen["base"], "outdir")) == []


def test_a_missing_tf115_runtime_says_what_to_install(frozen, tmp_path):
    """--runtime tf115 without TF 1.15 (an ordinary user has no pyenv Python 3.7): the message
    says what `make tf115` needs and the way around it, in C# and C++ alike."""
    env = dict(os.environ, TFFREEZE_TF115=str(tmp_path / "none"))
    env.pop("TFFREEZE_TF115_LIB", None)
    lines = {}
    for client, program in (("cs", CS), ("cpp", CPP)):
        done = subprocess.run([program, "run", frozen["pb"], "--input", "x=%s/x.npy" % frozen["base"], "--output", "y",
                               "--runtime", "tf115"], capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 1, (client, done.stderr)
        lines[client] = re.sub(r"^tffreeze-(cs|cpp) run: ", "", done.stderr.strip())
    assert lines["cs"] == lines["cpp"], lines
    assert lines["cpp"] == ("no TF 1.15 runtime at %s: run `make tf115` in the checkout (it needs Python 3.7: pyenv "
                            "install 3.7.16, or make tf115 PY37=/path/to/python3.7), or run without --runtime tf115 "
                            "[NOT_FOUND]" % (tmp_path / "none")), lines


def test_a_manifest_written_with_another_graph_is_warned_about_in_every_client(frozen, tmp_path):
    """R17 of the sixth trial: `run A.pb --manifest B.json` ran silently. The manifest's sha256 is
    the graph it was written with: every client warns, in the same words, and still runs when the
    names are there (a graph rewritten after the freeze keeps them)."""
    other = str(tmp_path / "other.pb")
    with open(frozen["pb"], "rb") as fh:
        data = fh.read()
    with open(other, "wb") as fh:  # the same graph written again by another tool: an empty library field
        fh.write(data + b"\x12\x00")
    import hashlib
    written = hashlib.sha256(data).hexdigest()[:12]
    actual = hashlib.sha256(open(other, "rb").read()).hexdigest()[:12]
    assert written != actual
    lines = {}
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):
        done = subprocess.run([program, "run", other, "--manifest", frozen["manifest"], "--input",
                               "x=%s/x.npy" % frozen["base"], "--output", "y"], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, (client, done.stderr)
        assert done.stdout.startswith("y"), (client, done.stdout)
        lines[client] = [re.sub(r"^tffreeze(-cs|-cpp)?: warning: ", "", l) for l in done.stderr.splitlines()
                         if "was written with another graph" in l]
    assert lines["cs"] == lines["py"] and lines["cpp"] == lines["py"], lines
    assert lines["py"] == ["--manifest %s was written with another graph than %s (sha256 %s, the file's is %s): its "
                           "names, dtypes and shapes may not be this graph's; give the manifest written with it"
                           % (frozen["manifest"], other, written, actual)], lines
    for client, program in (("py", PY), ("cs", CS), ("cpp", CPP)):  # the graph it was written with: no warning
        done = subprocess.run([program, "run", frozen["pb"], "--manifest", frozen["manifest"], "--input",
                               "x=%s/x.npy" % frozen["base"], "--output", "y"], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0 and "another graph" not in done.stderr, (client, done.stderr)
