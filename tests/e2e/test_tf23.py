"""--target mlnet (alias tf2.3): graphs that load and run in TensorFlow 2.3.1, the runtime ML.NET
(Microsoft.ML.TensorFlow) and TensorFlow.NET 0.20-0.30 run, equal to this TensorFlow; a model
holding an op 2.3.1 lacks is refused naming it, and every manifest says whether 2.3.1 loads
the graph.

Where Python 3.8 / TF 2.3.1 is absent these tests skip and say why; CI sets
TFFREEZE_REQUIRE_TF23=1, which turns the skip into a failure."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import models
from tffreeze import FailedPreconditionError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY23 = os.path.join(os.environ.get("TFFREEZE_TF23", os.path.join(ROOT, ".tf23")), "bin", "python")
RUNNER = os.path.join(ROOT, "tests", "tf115_run.py")


@pytest.fixture(scope="module", autouse=True)
def tf23():
    ok = os.path.exists(PY23) and subprocess.run([PY23, "-c", "import tensorflow"], capture_output=True).returncode == 0
    if not ok:
        why = "TF 2.3.1 runtime absent (%s): Python 3.8 from pyenv is needed; run `make tf23`" % PY23
        if os.environ.get("TFFREEZE_REQUIRE_TF23") == "1":
            pytest.fail(why + " -- TFFREEZE_REQUIRE_TF23=1 forbids skipping")
        print("SKIP: " + why)
        pytest.skip(why)


def run_tf23(graph: bytes, feeds, fetches, tmp_path):
    (tmp_path / "m.pb").write_bytes(graph)
    np.savez(tmp_path / "feeds.npz", **{k.replace(":", "__"): np.asarray(v) for k, v in feeds.items()})
    out = subprocess.run([PY23, RUNNER, str(tmp_path / "m.pb"), str(tmp_path / "feeds.npz"), ",".join(fetches),
                          str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "2.3.1"
    values = np.load(tmp_path / "out.npz")
    return [values[f.replace(":", "__")] for f in fetches]


@pytest.mark.parametrize("kind", ["conv_batch_norm", "lstm_tf1", "lstm_tf2", "saved_model_v2", "keras_export"])
def test_mlnet_target_runs_in_tensorflow_2_3_equal_to_this_tensorflow(client, tmp_path, kind):
    build = {"conv_batch_norm": lambda d: models.training_graph(d, True),
             "lstm_tf1": lambda d: models.lstm(d, cf_v1=True), "lstm_tf2": lambda d: models.lstm(d, cf_v1=False),
             "saved_model_v2": models.saved_model_v2, "keras_export": models.keras_export}[kind]
    model = build(str(tmp_path / "m"))
    for target in ("mlnet", "tf2.3"):
        outcome = client.freeze(model.directory, target=target)
        m = outcome.manifest
        assert m["target"] == "TARGET_MLNET" and m["loads_in_tensorflow_2_3"], m["tensorflow_2_3_issues"]
    fetches = [o["name"] for o in m["outputs"]]
    feeds = {}
    for i in m["inputs"]:  # the model's own values, else ones of the manifest's dtype and shape
        shape = [2 if d is None or d < 0 else d for d in (i["shape"] or [])]
        feeds[i["name"]] = model.feeds.get(i["name"], np.ones(shape, np.dtype(i["dtype"])))
    got = run_tf23(outcome.graph_bytes, feeds, fetches, tmp_path)
    want = models.run_frozen(outcome.graph_bytes, feeds, fetches)
    for name, a, b in zip(fetches, got, want):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6, err_msg=name)
        if name in model.expected:
            np.testing.assert_allclose(a, model.expected[name], atol=1e-5, rtol=1e-5, err_msg=name)


def test_an_op_tensorflow_2_3_lacks_is_refused_naming_it(client, tmp_path):
    model = models.approx_top_k(str(tmp_path / "m"))
    plain = client.freeze(model.directory).manifest  # no target: frozen, and the manifest says 2.3.1 would not load it
    assert not plain["loads_in_tensorflow_2_3"]
    assert any("ApproxTopK" in issue for issue in plain["tensorflow_2_3_issues"])
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory, target="mlnet")
    assert err.value.reason == "ERROR_REASON_TARGET_INCOMPATIBLE"
    assert err.value.metadata.get("target") == "TARGET_MLNET"
    assert "ApproxTopK" in err.value.message and "2.3.1" in err.value.message


@pytest.mark.parametrize("name", ["keras_mobilenet", "slim_inception_v1"])
def test_mlnet_target_real_architectures(client, real_models, tmp_path, name):
    import corpus

    info = corpus.load(real_models[name]["dir"])
    outcome = client.freeze(info["dir"], target="mlnet", outputs=info["outputs"], inputs=info.get("inputs") or ())
    m = outcome.manifest
    assert m["loads_in_tensorflow_2_3"], m["tensorflow_2_3_issues"]
    fetches = [o["name"] for o in m["outputs"]]
    feeds = {k: v for k, v in info["feeds"].items() if k in [i["name"] for i in m["inputs"]]}
    got = run_tf23(outcome.graph_bytes, feeds, fetches, tmp_path)
    want = models.run_frozen(outcome.graph_bytes, feeds, fetches)
    for name_, a, b in zip(fetches, got, want):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5, err_msg=name_)
