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


def _recurrent_saved_model(directory: str, kind: str):
    """A TF2 SavedModel with a recurrent loop, as TF2 users have them: a Keras LSTM saved by
    tf.saved_model.save or model.export, or a tf.Module writing a TensorArray in a loop.
    Returns (input name, a batch of one, the expected output)."""
    import keras

    tf = models.tf
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(1, 4, 3)
    if kind == "module":
        class Loop(tf.Module):
            def __init__(self):
                super().__init__()
                self.w = tf.Variable(np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 8))

            @tf.function(input_signature=[tf.TensorSpec([None, 4, 3], tf.float32, name="x")])
            def __call__(self, x):
                out = tf.TensorArray(tf.float32, size=4)
                state = tf.zeros([tf.shape(x)[0], 8])
                for i in tf.range(4):
                    state = tf.tanh(tf.matmul(x[:, i, :], self.w) + state)
                    out = out.write(i, state)
                return {"y": out.stack()}

        module = Loop()
        tf.saved_model.save(module, directory, signatures=module.__call__)
        return "x", x, module(tf.constant(x))["y"].numpy()
    keras.utils.set_random_seed(4)
    inp = keras.Input((4, 3), name="seq")
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.LSTM(8)(inp)))
    if kind == "export":
        model.export(directory, verbose=False)
        name = "seq"
    else:
        tf.saved_model.save(model, directory)
        name = "inputs"
    return name, x, model(x).numpy()


@pytest.mark.parametrize("kind", ["keras-save", "export", "module"])
def test_a_tf2_saved_model_loop_to_tflite_follows_its_own_input_shape_advice(client, tmp_path, kind):
    """A TF2 SavedModel's loop reaches TFLite unlowered, so --input-shape makes its tensor lists
    static (even at a batch of one, where shape inference alone leaves the items' batch open);
    the refusal without it gives the --input-shape line that then converts."""
    import re

    name, x, expected = _recurrent_saved_model(str(tmp_path / "sm"), kind)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "sm"), format="tflite")
    advised = re.findall(r"--input-shape (\S+=[-\d,]+\d)", err.value.message)
    assert advised == ["%s=1,4,3" % name], err.value.message
    outcome = client.freeze(str(tmp_path / "sm"), format="tflite", input_shapes=advised)
    m = outcome.manifest
    assert m["format"] == "FORMAT_TFLITE" and m["inputs"][0]["shape"] == [1, 4, 3]
    _record("TF2 SavedModel loop (%s)" % kind, "tflite --input-shape %s" % advised[0], "converted-and-equal")
    (got,) = run_returned_graph(outcome.graph_bytes, m, {name + ":0": x})
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
