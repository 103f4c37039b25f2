"""What the graph-sinks source answers with, when no training structure speaks (issue 33, round 13).

- A tensor whose value no input, variable or random draw decides (a sampler's grid from
  ``linspace(0, width - 1)`` of a shape) is a constant of the graph, never an output.
- In a graph that takes data, a sink no data reaches (a weight's L2 norm times a decay that the
  loss never adds) is a fact of the checkpoint, not an output.
- GradientTape's partial gradients (``gradient_tape/...``) are training, as tf.gradients' are.
- A streaming metric's update is the metric's, whatever the sink source thinks.
- Several sinks, one at least with only TensorFlow's default name (``mul_4``), are not sure.

Each fixture is a small graph written for the principle, with no loss an optimizer minimizes
(so that the sinks are what the resolver has to go by)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense, _answer = principle_graphs.meta, principle_graphs.dense, principle_graphs.answer


def _model():
    x = tf1.placeholder(tf.float32, [None, 4, 4, 1], name="image")
    return x, tf.identity(_dense(tf.reshape(x, [-1, 16]), 3, "net"), name="scores")


def test_a_grid_made_of_shapes_and_constants_is_no_output():
    def build():
        x, _ = _model()
        width = tf.cast(tf.shape(x)[2], tf.float32)
        tf.cast(tf.linspace(0.0, width - 1.0, tf.shape(x)[2]), tf.int32)  # (a sampler's grid, left unused)
    assert _answer(_meta(build)) == (["scores:0"], None)


def test_a_weight_norm_no_data_reaches_is_no_output():
    def build():
        _model()
        with tf1.variable_scope("net", reuse=True):
            kernel = tf1.get_variable("kernel")
        tf.multiply(1e-4, tf.nn.l2_loss(kernel))  # (a weight decay the loss never adds)
    assert _answer(_meta(build)) == (["scores:0"], None)


def test_gradient_tape_partial_gradients_are_training():
    def build():
        x, scores = _model()
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(scores)
        tape.gradient(y, x)  # (a saliency map computed and left unused)
    outputs, refused = _answer(_meta(build))
    listed = outputs or refused[1]
    assert "scores:0" in listed and not [t for t in listed if t.startswith("gradient_tape/")], (outputs, refused)


def test_a_metric_update_is_no_sink_output():
    def build():
        x, _ = _model()
        tf1.metrics.mean(tf.reduce_mean(x), name="avg_brightness")
    assert _answer(_meta(build)) == (["scores:0"], None)


def test_several_sinks_with_default_names_are_not_sure():
    def build():
        x, _ = _model()
        flat = tf.reshape(x, [-1, 16])
        for k in range(3):
            tf.multiply(_dense(flat, 2, "branch%d" % k), float(k + 1))  # Mul, Mul_1, Mul_2: nobody named them
    outputs, refused = _answer(_meta(build))
    assert outputs is None, outputs
    words, candidates = refused
    assert "graph sinks" in words and "no name of the author's" in words, words
    assert "scores:0" in candidates and "Mul:0" in candidates, candidates
