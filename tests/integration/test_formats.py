"""--format onnx / tflite: each model built here (conv + batch norm, an LSTM with TF1 and with
TF2 control flow) and from the real-architecture corpus (a Keras application, a tf-slim net)
is either converted, returned and run here in its own runtime equal to TensorFlow within
the stated tolerance, or refused naming the op (ERROR_REASON_CONVERSION_FAILED). Never a
success that does not load. The outcome table is printed (pytest -s)."""

from __future__ import annotations

import numpy as np
import pytest

import corpus
import models
from conftest import run_returned_graph
from tffreeze import FailedPreconditionError

ATOL, RTOL = 1e-4, 1e-3  # as the server's check (core/convert.py)
OUTCOMES = {}


def _freeze_as(client, directory, fmt, feeds, expected, **options):
    """'converted-and-equal' (run here, compared with TensorFlow's own outputs) or
    'refused-with-op OP'; anything else fails the test."""
    try:
        outcome = client.freeze(directory, format=fmt, **options)
    except FailedPreconditionError as exc:
        assert exc.reason == "ERROR_REASON_CONVERSION_FAILED", exc
        assert exc.metadata.get("format") == fmt
        assert exc.metadata.get("op"), "a refusal names the op: %s" % exc
        assert exc.metadata["op"] in exc.message
        return "refused-with-op %s" % exc.metadata["op"], None
    m = outcome.manifest
    assert m["format"] == "FORMAT_" + fmt.upper()
    assert m["conversion"]["runtime"] and m["conversion"]["max_abs_diff"] <= 1e-3
    assert m["sha256"] and m["size_bytes"] == len(outcome.graph_bytes)
    names = [o["name"] for o in m["outputs"]]
    known = {k: v for k, v in feeds.items() if k in [i["name"] for i in m["inputs"]]}
    got = run_returned_graph(outcome.graph_bytes, m, known)
    for name, value in zip(names, got):
        if name in expected:
            np.testing.assert_allclose(value, expected[name], atol=ATOL, rtol=RTOL, err_msg=name)
    return "converted-and-equal", m


def _record(model: str, fmt: str, outcome: str) -> None:
    OUTCOMES[(model, fmt)] = outcome
    print("%-28s %-7s %s" % (model, fmt, outcome))


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_conv_batch_norm_converts_exactly(client, tmp_path, fmt):
    model = models.training_graph(str(tmp_path / "m"), True)
    outputs = ["probs"]
    outcome, m = _freeze_as(client, model.directory, fmt, model.feeds, model.expected, outputs=outputs)
    _record("conv + batch norm", fmt, outcome)
    assert outcome == "converted-and-equal"
    if fmt == "onnx":
        assert m["conversion"]["opset"] >= 13 and m["conversion"]["converter"].startswith("tf2onnx")
        assert [t["runtime_name"] for t in m["conversion"]["inputs"]] == ["x:0"]


def test_lstm_tf1_control_flow(client, tmp_path):
    model = models.lstm(str(tmp_path / "m"), cf_v1=True)
    onnx, _ = _freeze_as(client, model.directory, "onnx", model.feeds, model.expected)
    _record("LSTM, TF1 control flow", "onnx", onnx)
    assert onnx == "converted-and-equal"
    tflite, _ = _freeze_as(client, model.directory, "tflite", model.feeds, model.expected)
    _record("LSTM, TF1 control flow", "tflite", tflite)
    assert tflite.startswith("refused-with-op TensorArray")  # TFLite runs TF2 control flow only


def test_lstm_tf2_control_flow_and_input_shape(client, tmp_path):
    """tf2onnx reports success on a TF2-control-flow LSTM and keeps TensorListReserve, which
    no runtime loads: refused. TFLite refuses its unknown element shapes until --input-shape
    pins the batch; then the lists are static and a builtins-only model runs."""
    model = models.lstm(str(tmp_path / "m"), cf_v1=False)
    onnx, _ = _freeze_as(client, model.directory, "onnx", model.feeds, model.expected)
    _record("LSTM, TF2 control flow", "onnx", onnx)
    assert onnx == "refused-with-op TensorListReserve"
    tflite, _ = _freeze_as(client, model.directory, "tflite", model.feeds, model.expected)
    _record("LSTM, TF2 control flow", "tflite", tflite)
    assert tflite.startswith("refused-with-op TensorList")
    pinned, m = _freeze_as(client, model.directory, "tflite", model.feeds, model.expected, input_shapes=["x=4,6,3"])
    _record("LSTM, TF2 control flow", "tflite --input-shape x=4,6,3", pinned)
    assert pinned == "converted-and-equal"
    assert m["inputs"][0]["shape"] == [4, 6, 3]
    assert any("tensor list" in n for n in m["notes"])  # what --input-shape did


def test_input_shape_errors_name_the_option(client, tmp_path):
    from tffreeze import InvalidArgumentError

    model = models.lstm(str(tmp_path / "m"), cf_v1=False)
    for shapes, words in ((["y=1,2"], "not an input"), (["x=4,6"], "does not fit"), (["x=a"], "D1,D2")):
        with pytest.raises(InvalidArgumentError) as err:
            client.freeze(model.directory, input_shapes=shapes)
        assert err.value.metadata.get("field") == "options.input_shapes" and words in err.value.message


@pytest.mark.parametrize("name", ["keras_mobilenet", "slim_inception_v1"])
@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_real_architectures(client, real_models, name, fmt):
    info = corpus.load(real_models[name]["dir"])
    outcome, _ = _freeze_as(client, info["dir"], fmt, info["feeds"], info["expected"], outputs=info["outputs"],
                            inputs=info.get("inputs") or ())
    _record(name, fmt, outcome)
    assert outcome == "converted-and-equal" or outcome.startswith("refused-with-op ")
