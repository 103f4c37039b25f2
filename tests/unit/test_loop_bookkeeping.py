"""A functional loop's results that nothing reads (tf.scan's counters and accumulators, each
behind TensorFlow's Identity) are loop bookkeeping, never offered as outputs (trial 10,
finding 14: inspect listed scan/while/Identity:0 .. _3 as candidates)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402
from tffreeze_server.core import resolve  # noqa: E402

tf1 = tf.compat.v1


def _scan_tagger():
    x = tf1.placeholder(tf.float32, [None, 5, 3], name="x")
    gold = tf1.placeholder(tf.int32, [None, 5], name="gold")
    w, v = tf1.get_variable("w", [7, 4]), tf1.get_variable("v", [4, 6])
    states = tf.scan(lambda h, xt: tf.tanh(tf.matmul(tf.concat([h, xt], 1), w)), tf.transpose(x, [1, 0, 2]),
                     initializer=tf.zeros([tf.shape(x)[0], 4]))
    logits = tf.transpose(tf.einsum("tbh,hk->tbk", states, v), [1, 0, 2])
    tf.argmax(logits, -1, name="tags")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=gold, logits=logits))
    tf1.train.AdamOptimizer().minimize(loss)


def test_no_loop_bookkeeping_among_the_candidates():
    meta = principle_graphs.meta(_scan_tagger)
    loop_results = [n.name for n in meta.graph_def.node if n.op == "Identity" and n.name.startswith("scan/while/")]
    assert loop_results, "the fixture no longer builds a functional loop"
    listed = [t for t, _ in resolve.candidates(meta)]
    assert "tags:0" in listed, listed
    assert not [t for t in listed if t.startswith("scan/while")], listed
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["tags:0"]


def _batch_norm_with_moving_averages():
    """A batch norm written as tutorials write it: tf.cond on is_training, the true branch updating
    the moving mean and variance with AssignSub of a decayed difference."""
    x = tf1.placeholder(tf.float32, [None, 4], name="x")
    y = tf1.placeholder(tf.int64, [None], name="y")
    is_training = tf1.placeholder_with_default(False, [], name="is_training")
    h = principle_graphs.dense(x, 3, "layer")
    mean = tf1.get_variable("moving_mean", [3], trainable=False, initializer=tf1.zeros_initializer())

    def train():
        m = tf.reduce_mean(h, 0)
        with tf1.control_dependencies([tf1.assign_sub(mean, (mean - m) * 0.1)]):
            return h - m
    normed = tf.cond(is_training, train, lambda: h - mean)
    logits = principle_graphs.dense(normed, 2, "head")
    tf.argmax(logits, 1, name="classes")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    tf1.train.AdamOptimizer().minimize(loss)


def test_no_moving_average_arithmetic_among_the_candidates():
    """Trial 11, finding 13: inspect listed cond/mul (the moving average's decayed difference) as
    "the last layer (Mul) of a network"."""
    meta = principle_graphs.meta(_batch_norm_with_moving_averages, v1_loops=True)
    feeding = {i.split(":")[0].lstrip("^") for n in meta.graph_def.node if n.op in ("AssignSub", "AssignSubVariableOp")
               for i in n.input}
    assert any(name.startswith("cond/") for name in feeding), feeding
    listed = [t for t, _ in resolve.candidates(meta)]
    assert "classes:0" in listed and not [t for t in listed if t.split(":")[0] in feeding], listed
