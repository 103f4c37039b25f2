"""--format onnx of TF2 control flow (issue 34, finding 13): a while loop that reads a tensor
list (TensorListFromTensor before the loop, TensorListGetItem in its body: an LSTM over time
steps, as dynamic_rnn and Keras build it) converts in tf2onnx without an error, yet leaves
the list as a tensor of no type that onnxruntime refuses ("Invalid tensor data type 0").
The refusal names the TensorList op(s) and the fix, never only the runtime's words."""

from __future__ import annotations

import numpy as np
import pytest

import models
from models import tf, tf1
from tffreeze import FailedPreconditionError


def _lstm_reading_a_tensor_list(directory: str) -> models.Model:
    """x[?, 6, 3] -> h[?, 5]: an LSTM as a TF2 while loop whose steps come from a tensor list
    (TensorArray.unstack, read in the body), with no list written in the loop."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 6, 3], name="x")
        rng = np.random.RandomState(7)
        w = tf1.get_variable("lstm/kernel", initializer=(rng.randn(8, 20) * 0.4).astype(np.float32))
        b = tf1.get_variable("lstm/bias", initializer=np.zeros(20, np.float32))
        steps = tf1.TensorArray(tf.float32, size=6).unstack(tf.transpose(x, [1, 0, 2]))
        zeros = tf.zeros(tf.stack([tf.shape(x)[0], 5]))

        def body(t, h, c):
            z = tf.matmul(tf.concat([steps.read(t), h], 1), w) + b
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            return t + 1, tf.sigmoid(o) * tf.tanh(c), c

        _, h, _ = tf1.while_loop(lambda t, h, c: t < 6, body, [tf.constant(0), zeros, zeros])
        tf.identity(h, name="h")

    rng = np.random.RandomState(8)
    with models.control_flow_v1(False):
        return models._save(directory, build, {"x:0": rng.randn(4, 6, 3).astype(np.float32)}, ["h:0"])


def test_onnx_of_a_tf2_loop_reading_a_tensor_list_names_the_op_and_the_fix(client, tmp_path):
    model = _lstm_reading_a_tensor_list(str(tmp_path / "m"))
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory, format="onnx")
    exc = err.value
    assert exc.reason == "ERROR_REASON_CONVERSION_FAILED", exc
    assert exc.metadata.get("format") == "onnx"
    op = exc.metadata.get("op", "")
    assert op.startswith("TensorList"), exc
    assert op in exc.message and exc.metadata.get("node") and exc.metadata["node"] in exc.message
    # the fix: TF1 control flow, or TFLite (with --input-shape where the loop writes lists)
    assert "disable_control_flow_v2" in exc.message and "--format tflite" in exc.message
    assert "--input-shape" in exc.message, exc.message
    words = "Invalid tensor data type"  # the runtime's words, if quoted, come after the op
    assert words not in exc.message or exc.message.index(op) < exc.message.index(words)
    print(exc.message)
