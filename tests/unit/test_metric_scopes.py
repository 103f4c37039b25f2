"""A streaming metric's scope holds no model output (issue 33).

``tf.compat.v1.metrics.*`` (and Keras metrics in a graph) open a name scope (``auc/``,
``mean_iou/``, ``recall_at_2/``) whose only state is accumulators: variables that are only
ever added into. Its asserts (``auc/assert_greater_equal/Assert/AssertGuard``), the identity
it hands the predictions on with, and the top-k it takes of them were taken as candidates,
and as "named tensors" beside an answer nobody named. Each fixture is a small graph written
for the principle."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402
from tffreeze_server.core import resolve  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense, _answer = principle_graphs.meta, principle_graphs.dense, principle_graphs.answer


def _classifier(scope=""):
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    with tf1.variable_scope(scope or tf1.get_variable_scope()):
        logits = _dense(_dense(x, 8, "h", tf.nn.relu), 3, "out")
        probs = tf.nn.softmax(logits)
    tf1.train.AdamOptimizer().minimize(
        tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)),
        global_step=tf1.train.get_or_create_global_step())
    return y, probs


def _metrics(y, probs):
    pred = tf.argmax(probs, 1)
    tf1.metrics.auc(tf.one_hot(y, 3), probs)
    tf1.metrics.mean_iou(y, pred, 3)
    tf1.metrics.accuracy(y, pred)
    tf1.metrics.recall_at_k(y, probs, 2)


def test_metric_internals_are_neither_answers_nor_the_authors_names():
    def build():
        _metrics(*_classifier())
    outputs, refused = _answer(_meta(build))
    assert outputs == ["Softmax:0"], refused


def test_the_metric_scope_is_the_outermost_one_without_the_models_state():
    def build():
        y, probs = _classifier("net")
        with tf1.variable_scope("net/eval"):
            _metrics(y, probs)
    meta = _meta(build)
    assert resolve.metric_scopes(meta.graph_def) == ["net/eval/"]
    outputs, refused = _answer(meta)
    assert outputs == ["net/Softmax:0"], refused


def test_a_counter_beside_the_model_makes_no_metric_scope():
    def build():
        _, probs = _classifier("net")
        with tf1.variable_scope("net", reuse=tf1.AUTO_REUSE):
            calls = tf1.get_variable("calls", [], tf.int64, initializer=tf1.zeros_initializer(), trainable=False)
        tf1.assign_add(calls, tf.cast(tf.shape(probs)[0], tf.int64))
    assert resolve.metric_scopes(_meta(build).graph_def) == []
