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
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense = principle_graphs.meta, principle_graphs.dense


def _answer(meta):
    try:
        return [t for t, _ in resolve.resolve(meta, [], []).outputs], None
    except FailedPrecondition as refused:
        return None, (str(refused), refused.metadata.get("candidates", "").split(","))


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
