"""The real TensorFlowSharp (the library C# users load frozen graphs with, from
NuGet 1.15.3) runs the `--target tensorflowsharp` output of every real
architecture of the corpus on TF 1.15.0's C API, equal to the original model.

TensorFlowSharp is compiled from its sources by tests/tfsharp.py, with a small runner
(tests/tensorflowsharp/RunFrozen.cs) that uses TensorFlowSharp's API only."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import corpus
import tfsharp

ROOT = tfsharp.ROOT
# TF 1.15's kernels round differently from TF 2.21's: compare within 1e-4.
RTOL = ATOL = 1e-4


@pytest.fixture(scope="module")
def runner():
    """(command prefix, environment) running RunFrozen.exe on the real TensorFlowSharp."""
    dll = tfsharp.build()
    exe = os.path.join(tfsharp.OUT, "RunFrozen.exe")
    subprocess.run(["mcs", "-nologo", "-warnaserror", "-out:" + exe, "-r:" + dll, "-r:System.Numerics.dll",
                    os.path.join(ROOT, "tests", "tensorflowsharp", "RunFrozen.cs")], check=True)
    return ["mono", exe], tfsharp.tf115_env()


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


# The runner passes numeric tensors; the string-input model runs on TF 1.15 in test_tf115.
NUMERIC_INPUTS = [n for n in corpus.MODELS if n != "text_vocab_table"]


@pytest.mark.parametrize("name", NUMERIC_INPUTS)
def test_real_tensorflowsharp_runs_the_corpus_on_tf115(client, runner, real_models, tmp_path, name):
    info = real_models[name]
    pb = tmp_path / "model.pb"
    named = info["outputs"] if name in corpus.UNDECIDABLE else ()  # the graph does not decide them
    outcome = client.freeze(info["dir"], str(pb), target="tensorflowsharp", outputs=named)
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
