"""--target tensorflowsharp: graphs that load and run in TF 1.15.0, the runtime the
TensorFlowSharp package bundles, from Python 3.7 and from C# on TF 1.15's C API:
`tffreeze-cs run` on the built-in binding and on the real TensorFlowSharp
(--tensorflowsharp), and the C# examples built against each library.

Where Python 3.7 / TF 1.15 is absent these tests skip and say why; CI sets
TFFREEZE_REQUIRE_TF115=1, which turns the skip into a failure."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pytest

import models
import tfsharp
from tffreeze import FailedPreconditionError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY115 = os.path.join(os.environ.get("TFFREEZE_TF115", os.path.join(ROOT, ".tf115")), "bin", "python")
CS = os.path.join(ROOT, "client_csharp", "bin", "tffreeze-cs")
RUNNER = os.path.join(ROOT, "tests", "tf115_run.py")


@pytest.fixture(scope="module", autouse=True)
def tf115():
    ok = os.path.exists(PY115) and subprocess.run([PY115, "-c", "import tensorflow"], capture_output=True).returncode == 0
    if not ok:
        why = "TF 1.15 runtime absent (%s): Python 3.7 from pyenv is needed; run `make tf115`" % PY115
        if os.environ.get("TFFREEZE_REQUIRE_TF115") == "1":
            pytest.fail(why + " -- TFFREEZE_REQUIRE_TF115=1 forbids skipping")
        print("SKIP: " + why)
        pytest.skip(why)
    if not os.path.exists(CS):
        subprocess.run(["make", "-s", "-C", ROOT, "csharp"], check=True)


def run_py115(pb, feeds, fetches, tmp_path):
    np.savez(tmp_path / "feeds.npz", **{k.replace(":", "__"): np.asarray(v) for k, v in feeds.items()})
    out = subprocess.run([PY115, RUNNER, str(pb), str(tmp_path / "feeds.npz"), ",".join(fetches),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        return None, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "1.15.0"
    values = np.load(tmp_path / "out.npz")
    return [values[f.replace(":", "__")] for f in fetches], ""


def run_cs115(pb, manifest, feeds, fetches, tmp_path, *extra):
    args = [CS, "run", str(pb), "--manifest", str(manifest), "--runtime", "tf115", *extra]
    for i, (name, value) in enumerate(feeds.items()):
        np.save(tmp_path / ("in%d.npy" % i), value)
        args += ["--input", "%s=%s" % (name, tmp_path / ("in%d.npy" % i))]
    for i, name in enumerate(fetches):
        args += ["--output", "%s=%s" % (name, tmp_path / ("out%d.npy" % i))]
    out = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "(TensorFlow 1.15.0)" in out.stderr
    return [np.load(tmp_path / ("out%d.npy" % i)) for i in range(len(fetches))]


CASES = {
    "dense": lambda d: models.dense(d, True),
    "conv_bn_resource_cf2": lambda d: models.training_graph(d, True, cf_v1=False, fused=True),
    "conv_bn_ref_cf1": lambda d: models.training_graph(d, False, cf_v1=True, fused=False),
    "while_cond_resource_cf2": lambda d: models.loop_and_cond(d, True, False),
    "while_cond_ref_cf1": lambda d: models.loop_and_cond(d, False, True),
    "saved_model_v2": lambda d: models.saved_model_v2(d),
}


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """{library: (directory of the built examples, MONO_PATH)}: every C# example built against
    the built-in binding and against TensorFlowSharp."""
    real = tfsharp.build()
    built = {}
    for library, mono_path in (("binding", tfsharp.CS_BIN), ("tensorflowsharp", tfsharp.OUT)):
        out = tmp_path_factory.mktemp(library)
        helpers = tfsharp.helpers(out, library, real)
        for name in os.listdir(os.path.join(ROOT, "client_csharp", "examples")):
            if name.endswith(".cs"):
                proc = tfsharp.csc([os.path.join(ROOT, "client_csharp", "examples", name)], out / (name[:-3] + ".exe"),
                                   library, real, refs=[helpers])
                assert proc.returncode == 0, proc.stdout
        built[library] = (out, mono_path)
    return real, built


@pytest.mark.parametrize("kind", list(CASES))
def test_tensorflowsharp_target_runs_in_tf115(client, examples, tmp_path, kind):
    model = CASES[kind](str(tmp_path / "model"))
    pb = tmp_path / "m.pb"
    outcome = client.freeze(model.directory, output_path=str(pb), target="tensorflowsharp")
    m = outcome.manifest
    assert m["target"] == "TARGET_TENSORFLOWSHARP"
    (tmp_path / "m.json").write_text(json.dumps(m))
    feeds, expected = dict(model.feeds), dict(model.expected)
    if m["signature"] and not any(":" in k for k in feeds):
        feeds = {m["signature"]["inputs"][a]["name"]: v for a, v in feeds.items()}
        expected = {m["signature"]["outputs"][a]["name"]: v for a, v in expected.items()}
    fetches = list(expected)
    py, err = run_py115(pb, feeds, fetches, tmp_path)
    assert py is not None, err
    cs = run_cs115(pb, tmp_path / "m.json", {k.split(":")[0] if k.endswith(":0") else k: v for k, v in feeds.items()},
                   fetches, tmp_path)
    for name, a, b in zip(fetches, py, cs):
        np.testing.assert_allclose(a, expected[name], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b, expected[name], rtol=1e-5, atol=1e-5)
    # The same run through the real TensorFlowSharp assembly: the same bytes out.
    real, built = examples
    via_tfsharp = run_cs115(pb, tmp_path / "m.json", {k.split(":")[0] if k.endswith(":0") else k: v
                                                       for k, v in feeds.items()}, fetches, tmp_path,
                            "--tensorflowsharp", real)
    for a, b in zip(cs, via_tfsharp):
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    # Every example, built against each library, prints the same.
    env = tfsharp.tf115_env()
    for exe in sorted(os.listdir(built["binding"][0])):
        if exe.endswith(".exe"):
            outs = []
            for library in ("binding", "tensorflowsharp"):
                directory, mono_path = built[library]
                run = subprocess.run(["mono", str(directory / exe), str(pb), str(tmp_path / "m.json")], capture_output=True,
                                     text=True, timeout=300, env=dict(env, MONO_PATH=mono_path))
                assert run.returncode == 0, "%s (%s): %s" % (exe, library, run.stderr)
                outs.append(run.stdout)
            assert outs[0] == outs[1] and len(outs[0].splitlines()) == len(m["outputs"]) > 0, outs


def test_without_the_target_default_attrs_are_stripped_and_tf115_loads_it(client, tmp_path):
    """Every output has default-valued attributes stripped (TF 2.x adds MatMul's grad_a/grad_b...),
    so a C# user who forgot the target still gets a graph TF 1.15 loads, and the manifest says so."""
    model = models.dense(str(tmp_path / "model"), True)
    pb = tmp_path / "m.pb"
    outcome = client.freeze(model.directory, output_path=str(pb))
    assert outcome.manifest["loads_in_tensorflowsharp"] is True and outcome.manifest["tensorflowsharp_issues"] == []
    values, err = run_py115(pb, model.feeds, ["y:0"], tmp_path)
    assert values is not None, err
    np.testing.assert_allclose(values[0], model.expected["y:0"], rtol=1e-5, atol=1e-5)


def test_op_missing_in_tf115_is_named(client, tmp_path):
    def build():
        x = models.tf1.placeholder(models.tf.float32, [None], name="x")
        w = models._variable("w", np.float32(0.5), True)
        models.tf.raw_ops.Erfinv(x=x * w, name="out")

    model = models._save(str(tmp_path / "model"), build, {"x:0": np.array([0.1, -0.2], np.float32)}, ["out:0"])
    plain = client.freeze(model.directory, output_path=str(tmp_path / "plain.pb"))
    assert plain.manifest["outputs"][0]["name"] == "out:0"  # fine for TF 2.x ...
    m = plain.manifest  # ... and the manifest says TF 1.15 will refuse it, and why
    assert m["loads_in_tensorflowsharp"] is False and any("out (op Erfinv" in i for i in m["tensorflowsharp_issues"])
    values, err = run_py115(tmp_path / "plain.pb", model.feeds, ["out:0"], tmp_path)
    assert values is None and "Erfinv" in err
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory, target="tensorflowsharp")
    assert "out (op Erfinv is not in TensorFlow 1.15.0)" in err.value.message


def test_tensorflowsharp_run_fails_as_the_builtin_binding_does(client, tmp_path):
    """Bad input through --tensorflowsharp: exit 1 and the same one line as the built-in binding."""
    real = tfsharp.build()
    model = models.saved_model_v2(str(tmp_path / "sm"))
    pb = tmp_path / "m.pb"
    outcome = client.freeze(model.directory, output_path=str(pb), target="tensorflowsharp")
    (tmp_path / "m.json").write_text(outcome.manifest_json())
    np.save(tmp_path / "x.npy", model.feeds["x"])
    np.save(tmp_path / "steps64.npy", model.feeds["steps"].astype(np.int64))
    np.save(tmp_path / "steps.npy", model.feeds["steps"])
    base = [CS, "run", str(pb), "--manifest", str(tmp_path / "m.json"), "--runtime", "tf115",
            "--input", "x=%s" % (tmp_path / "x.npy")]
    cases = {
        "INVALID_ARGUMENT": (["--input", "steps=%s" % (tmp_path / "steps64.npy"), "--output", "logits=o.npy"],
                             "input steps takes int32 but the .npy holds int64"),
        "NOT_FOUND": (["--input", "steps=%s" % (tmp_path / "steps.npy"), "--output", "logit=o.npy"],
                      "'logit' is not among the manifest's outputs"),
    }
    for kind, (extra, message) in cases.items():
        lines = []
        for via in ([], ["--tensorflowsharp", real]):
            out = subprocess.run(base + extra + via, capture_output=True, text=True, timeout=300, cwd=str(tmp_path))
            assert out.returncode == 1, out.stderr
            line = [l for l in out.stderr.splitlines() if l.startswith("tffreeze-cs run:")]
            assert len(line) == 1 and message in line[0] and line[0].endswith("[%s]" % kind), out.stderr
            lines.append(line[0])
        assert lines[0] == lines[1]
    assert not (tmp_path / "o.npy").exists()
    # What is not TensorFlowSharp, or not there, is named.
    ok_args = ["--input", "steps=%s" % (tmp_path / "steps.npy"), "--output", "logits=%s" % (tmp_path / "o.npy")]
    for dll, message in ((tmp_path / "nope.dll", "no file"),
                         (os.path.join(tfsharp.CS_BIN, "TfFreeze.dll"), "is not TensorFlowSharp")):
        out = subprocess.run(base + ok_args + ["--tensorflowsharp", str(dll)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 1 and message in out.stderr, out.stderr


def test_a_vocabulary_table_runs_in_tf115_without_initialisation(client, tmp_path):
    """A frozen text model whose constant vocabulary table became plain ops runs in
    TensorFlow 1.15 (TensorFlowSharp's runtime) with no table initialisation."""
    model = models.text_with_vocabulary(str(tmp_path / "text"))
    pb = tmp_path / "m.pb"
    client.freeze(model.directory, output_path=str(pb), outputs=["probabilities"], target="tensorflowsharp")
    feeds = {"tokens:0": np.asarray(model.feeds["tokens:0"], dtype="S")}
    got, err = run_py115(pb, feeds, ["probabilities:0"], tmp_path)
    assert got is not None, err
    np.testing.assert_allclose(got[0], model.expected["probabilities:0"], rtol=1e-5, atol=1e-5)
