"""Principles restated after the wrong answers the eighth round of untried model kinds left (issue
33), each on a small graph written for it, not the round's models:
- what a loop's body computes flows around its back edges: a greedy decoding loop's tokens are
  computed with the trained weights, an inference branch like any other;
- rounding a score is a decision about it, as an argmax is: an accuracy over rounded scores
  evaluates the score;
- what computes with no variable at all (a fixed feature network of constants applied to the
  model's output inside the loss) is the loss's computation, not an output;
- a part of a tensor another end holds whole (a slice taken for its static shape) is no end."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402
from tffreeze_server.core import resolve  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402

tf1 = tf.compat.v1


_meta, _dense = principle_graphs.meta, principle_graphs.dense


def _answer(meta):
    """The outputs, or the candidates of a refusal (then the first is what it would name)."""
    try:
        return [t for t, _ in resolve.resolve(meta, [], []).outputs], None
    except FailedPrecondition as refused:
        return None, refused.metadata.get("candidates", "").split(",")


def _teacher_forced_and_greedy():
    """A decoder trained with teacher forcing over three steps unrolled in Python, and a greedy
    decoding loop (tf.while_loop) that feeds its argmax back, writing tokens into a TensorArray."""
    source = tf1.placeholder(tf.float32, [None, 5], name="source")
    target_in = tf1.placeholder(tf.int32, [None, 3], name="target_in")
    target_out = tf1.placeholder(tf.int32, [None, 3], name="target_out")
    emb = tf1.get_variable("emb", [6, 4])
    state0 = _dense(source, 4, "encoder", tf.nn.tanh)

    def step(state, token):
        state = _dense(tf.concat([state, tf.nn.embedding_lookup(emb, token)], 1), 4, "cell", tf.nn.tanh)
        return state, _dense(state, 6, "proj")
    state, losses = state0, []
    for t in range(3):
        state, logits = step(state, target_in[:, t])
        losses.append(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_out[:, t], logits=logits))
    loss = tf.reduce_mean(tf.add_n(losses))

    def body(i, state, token, tokens):
        state, logits = step(state, token)
        token = tf.argmax(logits, 1, output_type=tf.int32)
        return i + 1, state, token, tokens.write(i, token)
    _, _, _, tokens = tf.while_loop(lambda i, *_: i < 3, body, [
        tf.constant(0), state0, tf.zeros_like(target_in[:, 0]), tf.TensorArray(tf.int32, size=3)])
    tf.transpose(tokens.stack(), name="translation")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_greedy_decoding_loop_is_an_inference_branch():
    outputs, candidates = _answer(_meta(_teacher_forced_and_greedy, v1_loops=True))
    assert outputs == ["translation:0"] or candidates[0] == "translation:0", (outputs, candidates)


def _rounded_accuracy():
    """A similarity regressed on 0/1 scores; an accuracy compares the rounded similarity with them."""
    a = tf1.placeholder(tf.float32, [None, 4], name="a")
    b = tf1.placeholder(tf.float32, [None, 4], name="b")
    score = tf1.placeholder(tf.float32, [None], name="score")
    ea, eb = _dense(a, 3, "tower", tf.nn.tanh), _dense(b, 3, "tower", tf.nn.tanh)
    sim = tf.exp(-tf.reduce_sum(tf.abs(ea - eb), 1), name="similarity")
    loss = tf1.losses.mean_squared_error(score, sim)
    tf.reduce_mean(tf.cast(tf.equal(tf.round(sim), score), tf.float32), name="accuracy")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_rounding_a_score_for_an_accuracy_is_its_decision_not_an_output():
    assert _answer(_meta(_rounded_accuracy))[0] == ["similarity:0"]


def _through_a_fixed_feature_network():
    """A transform network whose output, and its input, pass through a feature network of
    constants; the loss compares their features and a Gram matrix of the output's features with a
    constant. A slice of the output is taken for its static shape and never read."""
    x = tf1.placeholder(tf.float32, [4, 6], name="content")
    out = tf.identity(_dense(_dense(x, 8, "t1", tf.nn.relu), 6, "t2"), name="stylized")
    kernel = tf.constant(np.random.RandomState(0).randn(6, 5).astype(np.float32))

    def features(t):
        return tf.nn.relu(tf.matmul(t, kernel))
    f_out, f_in = features(out), features(x)
    gram = tf.matmul(f_out, f_out, transpose_a=True)
    _ = out[:, 1:]  # (its static shape sizes a term, as tensor_size(preds[:, 1:]) does)
    loss = tf.nn.l2_loss(f_out - f_in) + tf.nn.l2_loss(gram - tf.ones([5, 5]))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_a_fixed_feature_network_and_an_unread_slice_are_no_outputs():
    assert _answer(_meta(_through_a_fixed_feature_network))[0] == ["stylized:0"]


def _eval_tower_with_by_products():
    """A train tower and an eval tower share their weights; the shared function returns the class
    logits and a reconstruction (each with a layer of its own); the train tower's loss reads both,
    the eval tower's are both unread."""
    def tower(x):
        h = _dense(x, 4, "trunk", tf.nn.relu)
        return _dense(h, 3, "classify"), _dense(h, 5, "decode")
    x, y = tf1.placeholder(tf.float32, [None, 5], name="x"), tf1.placeholder(tf.int32, [None], name="y")
    logits, recon = tower(x)
    loss = (tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
            + tf.reduce_mean(tf.square(recon - x)))
    test_logits, test_recon = tower(tf1.placeholder(tf.float32, [None, 5], name="test_x"))
    tf.identity(test_logits, name="logits_test")
    tf.identity(test_recon, name="recon_test")
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_several_computations_no_loss_reads_are_open():
    outputs, candidates = _answer(_meta(_eval_tower_with_by_products))
    assert outputs is None and {"logits_test:0", "recon_test:0"} <= set(candidates[:3]), (outputs, candidates)
