"""The real TensorFlowSharp (the library C# users load frozen graphs with, from
NuGet 1.15.3) runs the `--target tensorflowsharp` output of every real
architecture of the corpus on TF 1.15.0's C API, equal to the original model.

TensorFlowSharp is compiled here from its sources (third-party, outside this
repository: ../shared/third_party/TensorFlowSharp, or TFFREEZE_TENSORFLOWSHARP_SRC)
into build/tensorflowsharp/, with a small runner (tests/tensorflowsharp/RunFrozen.cs)
that uses TensorFlowSharp's API only. Where the sources or TF 1.15 are absent the
tests skip and say why; CI sets TFFREEZE_REQUIRE_TF115=1, which makes that a failure."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import corpus

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TF115 = os.environ.get("TFFREEZE_TF115", os.path.join(ROOT, ".tf115"))
TF115_LIB = os.path.join(TF115, "lib", "python3.7", "site-packages", "tensorflow_core", "python",
                         "_pywrap_tensorflow_internal.so")
OUT = os.path.join(ROOT, "build", "tensorflowsharp")
# TF 1.15's kernels round differently from TF 2.21's: compare within 1e-4.
RTOL = ATOL = 1e-4


def _sources():
    candidates = [os.environ.get("TFFREEZE_TENSORFLOWSHARP_SRC", ""),
                  os.path.join(ROOT, "..", "shared", "third_party", "TensorFlowSharp"),
                  "/work/shared/third_party/TensorFlowSharp"]
    return next((os.path.abspath(c) for c in candidates if c and os.path.exists(os.path.join(c, "Tensor.cs"))), None)


def _absent(why):
    if os.environ.get("TFFREEZE_REQUIRE_TF115") == "1":
        pytest.fail(why + " -- TFFREEZE_REQUIRE_TF115=1 forbids skipping")
    print("SKIP: " + why)
    pytest.skip(why)


@pytest.fixture(scope="module")
def runner():
    """(command prefix, environment) running RunFrozen.exe on the real TensorFlowSharp."""
    src = _sources()
    if src is None:
        _absent("TensorFlowSharp sources not found (set TFFREEZE_TENSORFLOWSHARP_SRC)")
    if not os.path.exists(TF115_LIB):
        _absent("TF 1.15 runtime absent (%s): run `make tf115`" % TF115_LIB)
    os.makedirs(OUT, exist_ok=True)
    dll, exe = os.path.join(OUT, "TensorFlowSharp.dll"), os.path.join(OUT, "RunFrozen.exe")
    files = sorted(os.path.join(d, f) for d in (src, os.path.join(src, "Ops")) if os.path.isdir(d)
                   for f in os.listdir(d) if f.endswith(".cs"))
    subprocess.run(["mcs", "-nologo", "-target:library", "-unsafe", "-nowarn:618,649,169,414,219,1591,3021",
                    "-r:System.dll", "-r:System.Core.dll", "-r:System.Numerics.dll", "-out:" + dll, *files],
                   check=True, capture_output=True)
    subprocess.run(["mcs", "-nologo", "-warnaserror", "-out:" + exe, "-r:" + dll, "-r:System.Numerics.dll",
                    os.path.join(ROOT, "tests", "tensorflowsharp", "RunFrozen.cs")], check=True)
    with open(dll + ".config", "w") as fh:  # TensorFlowSharp P/Invokes "libtensorflow"
        fh.write('<configuration><dllmap dll="libtensorflow" target="%s"/></configuration>\n' % TF115_LIB)
    with open(os.path.join(TF115, "pyvenv.cfg")) as fh:
        home = next(l.split("=", 1)[1].strip() for l in fh if l.startswith("home"))
    env = dict(os.environ, LD_PRELOAD=os.path.join(home, "..", "lib", "libpython3.7m.so.1.0"))
    return ["mono", exe], env


def _run(runner, pb, info, tmp_path):
    cmd, env = runner
    args = cmd + [str(pb)]
    for i, (name, value) in enumerate(info["feeds"].items()):
        value = np.ascontiguousarray(value)
        value.tofile(tmp_path / ("in%d.bin" % i))
        args.append("in|%s|%s|%s|%s" % (name, value.dtype.name, ",".join(map(str, value.shape)),
                                         tmp_path / ("in%d.bin" % i)))
    for i, name in enumerate(info["outputs"]):
        args.append("out|%s|%s" % (name, tmp_path / ("out%d.bin" % i)))
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "TensorFlow 1.15.0"
    got = []
    for i, (name, line) in enumerate(zip(info["outputs"], lines)):
        want = info["expected"][name]
        assert line.split("|")[2] == ",".join(map(str, want.shape)), line
        got.append(np.fromfile(tmp_path / ("out%d.bin" % i), dtype=want.dtype).reshape(want.shape))
    return got


@pytest.mark.parametrize("name", corpus.MODELS)
def test_real_tensorflowsharp_runs_the_corpus_on_tf115(client, runner, real_models, tmp_path, name):
    info = real_models[name]
    pb = tmp_path / "model.pb"
    outcome = client.freeze(info["dir"], str(pb), target="tensorflowsharp")
    assert outcome.manifest["loads_in_tensorflowsharp"] is True
    for out_name, value in zip(info["outputs"], _run(runner, pb, info, tmp_path)):
        np.testing.assert_allclose(value, info["expected"][out_name], rtol=RTOL, atol=ATOL, err_msg=out_name)


def test_default_freeze_of_the_corpus_loads_in_tensorflowsharp_when_the_manifest_says_so(
        client, runner, real_models, tmp_path):
    """Without the target option the graph still has default attributes stripped;
    where the manifest says it loads in TensorFlowSharp, it does."""
    info = real_models["lstm_classifier"]
    pb = tmp_path / "model.pb"
    outcome = client.freeze(info["dir"], str(pb))
    assert outcome.manifest["loads_in_tensorflowsharp"] is True
    for out_name, value in zip(info["outputs"], _run(runner, pb, info, tmp_path)):
        np.testing.assert_allclose(value, info["expected"][out_name], rtol=RTOL, atol=ATOL, err_msg=out_name)
