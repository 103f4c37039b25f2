"""Principles restated after the eleventh round of untried model kinds (issue 33), each on a
small graph written for it, not the round's models:
- what a loss with no labels reads (a reconstruction) beside a prediction compared with labels
  may be a second output or the network's pre-training / regulariser: the graph does not say,
  so the freeze is not sure, and lists the labelled prediction's answer first;
- alone, with no labelled loss beside it, the reconstruction is the model's output."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402
from tffreeze_server.core import resolve  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense = principle_graphs.meta, principle_graphs.dense


_answer = principle_graphs.answer


def _encoder_with(heads):
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        code = _dense(x, 3, "encoder", tf.nn.relu)
        recon = tf.identity(_dense(code, 6, "decoder"), name="reconstruction")
        losses = [tf.reduce_mean(tf.square(recon - x), name="reconstruction_loss")]
        if "classifier" in heads:
            y = tf1.placeholder(tf.int64, [None], name="y")
            logits = _dense(code, 4, "classifier")
            tf.argmax(logits, 1, name="classes")
            losses.append(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits),
                                         name="class_loss"))
        for loss in losses:
            tf1.train.AdamOptimizer(1e-3).minimize(loss)
    return _meta(build)


def test_a_reconstruction_beside_a_labelled_prediction_is_not_sure():
    outs, refused = _answer(_encoder_with(["classifier"]))
    assert outs is None, outs
    words, candidates = refused
    assert candidates[0] == "classes:0" and "reconstruction:0" in candidates, candidates
    assert "a loss with no labels (reconstruction_loss) reads" in words and "pre-training" in words, words


def test_a_reconstruction_alone_is_the_output():
    outs, refused = _answer(_encoder_with([]))
    assert outs == ["reconstruction:0"], refused


# -- the twelfth round's principles (fixtures written for them, not the round's models) ---------

def _implicit_network():
    """A coordinate network whose output a loss compares with ground truth; its gradient with
    respect to the coordinates (tf.gradients with ones_like grad_ys) feeds a second loss term,
    and an image summary shows the output reshaped."""
    coords = tf1.placeholder(tf.float32, [None, 2], name="coords")
    truth = tf1.placeholder(tf.float32, [None, 1], name="truth")
    out = _dense(_dense(coords, 8, "l1", tf.sin), 1, "l2")
    grad = tf1.gradients(out, coords, grad_ys=tf.ones_like(out))[0]
    tf1.summary.image("shown", tf.reshape(out, [-1, 4, 4, 1]))
    loss = tf.reduce_mean(tf.square(out - truth)) + 0.1 * tf.reduce_mean(tf.square(grad))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_values_no_input_decides_and_views_made_for_summaries_are_no_outputs():
    meta = _meta(_implicit_network)
    outs, refused = _answer(meta)
    assert outs == ["l2/BiasAdd:0"], (outs, refused)
    listed = [t for t, _ in resolve.candidates(meta)]
    assert not [t for t in listed if t.startswith(("ones_like", "Reshape"))], listed


def _flattened_by_the_loss_function():
    """Per-position logits [batch, time, vocab] given to sparse_softmax_cross_entropy_with_logits,
    whose Python wrapper flattens them inside its own name scope before the fused op."""
    x = tf1.placeholder(tf.float32, [None, 5, 3], name="tokens")
    y = tf1.placeholder(tf.int32, [None, 5], name="next_tokens")
    with tf1.variable_scope("model"):  # (the loss built inside the model's own scope, as language models do)
        logits = tf.einsum("btd,dv->btv", x, tf1.get_variable("proj", [3, 7]))
        logits = logits + tf1.get_variable("bias", [7])
        loss = tf.reduce_mean(tf1.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_reshape_inside_a_loss_functions_own_scope_is_the_loss_functions():
    meta = _meta(_flattened_by_the_loss_function)
    assert any(n.name.startswith("model/SparseSoftmaxCrossEntropyWithLogits/Reshape") for n in meta.graph_def.node), \
        "the fixture no longer makes the wrapper's reshape"
    outs, refused = _answer(meta)
    assert outs == ["model/add:0"], (outs, refused)
