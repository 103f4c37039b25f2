"""An answer the author did not name, beside tensors they did, is not sure (issue 33).

An author who names the tensors of a computation (``tf.identity(x, name="scores")``,
``name="dense_decoded"``) names the ones they will fetch. When the resolver's answer holds
a tensor that carries only TensorFlow's default name (``transpose``, ``Sigmoid``,
``CTCGreedyDecoder``) and a tensor the author named is next to it, the freeze refuses and
lists the named tensor first. Each fixture is a small graph written for the principle, not a
model the principle was found on."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402
from tffreeze_server.core import resolve  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense = principle_graphs.meta, principle_graphs.dense


_answer = principle_graphs.answer


def _node(build, name):
    meta = _meta(build)
    return next(n for n in meta.graph_def.node if n.name == name)


@pytest.mark.parametrize("make,name,default", [
    (lambda x: tf.transpose(x), "transpose", True),
    (lambda x: tf.nn.sigmoid(x), "Sigmoid", True),
    (lambda x: tf.expand_dims(x, 0), "ExpandDims", True),
    (lambda x: tf.add(x, 1.0) + 2.0, "add_1", True),
    (lambda x: tf.math.top_k(x, 1), "TopKV2", True),
    (lambda x: tf1.to_int32(x), "ToInt32", True),  # (tf.compat.v1's casts name their op so)
    (lambda x: tf1.to_float(tf.cast(x, tf.int32)), "ToFloat", True),
    (lambda x: tf.identity(x, name="scores"), "scores", False),
    (lambda x: tf.math.top_k(x, 1, name="top_k"), "top_k", False),
    (lambda x: tf.nn.softmax(x, name="probabilities"), "probabilities", False),
])
def test_default_names_are_told_from_authored_ones(make, name, default):
    def build():
        make(tf1.placeholder(tf.float32, [None, 3], name="x"))
    assert resolve._default_name(_node(build, name)) is default


def _reshaped_for_the_loss(named: bool):
    """A scorer whose scores are reshaped and transposed for a pairwise loss (positives and
    negatives side by side), as ranking models train."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 4], name="pairs")
        h = tf.reduce_sum(_dense(x, 3, "enc", tf.nn.tanh), 1)
        scores = tf.identity(h, name="scores") if named else h
        side_by_side = tf.transpose(tf.reshape(scores, [2, -1]))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.zeros_like(side_by_side[:, 0], tf.int32), logits=side_by_side))
        tf1.train.AdamOptimizer(1e-3).minimize(loss)
    return _meta(build)


def test_an_unnamed_answer_beside_a_named_tensor_is_refused_naming_it_first():
    outs, refused = _answer(_reshaped_for_the_loss(named=True))
    assert outs is None, outs
    words, candidates = refused
    assert candidates[0] == "scores:0", candidates
    assert "has no name of the graph's author" in words and "(scores:0)" in words, words


def test_a_graph_whose_author_named_nothing_is_answered_as_before():
    outs, refused = _answer(_reshaped_for_the_loss(named=False))
    assert refused is None or "no name of the graph's author" not in refused[0], refused


def _decoded(label_named: bool):
    """Per-step logits decoded with a greedy CTC decoder, densified under an author's name; the
    loss is a CTC loss on the logits with sparse labels."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 6, 4], name="frames")
        seq_len = tf1.placeholder(tf.int32, [None], name="seq_len")
        labels = tf1.sparse_placeholder(tf.int32, name="labels")
        logits = tf.transpose(tf.reshape(_dense(tf.reshape(x, [-1, 4]), 5, "proj"), [-1, 6, 5]), [1, 0, 2])
        loss = tf.reduce_mean(tf1.nn.ctc_loss(labels, logits, seq_len))
        decoded, _ = tf1.nn.ctc_greedy_decoder(logits, seq_len)
        tf.sparse.to_dense(decoded[0], default_value=-1, name="dense_decoded" if label_named else None)
        tf1.train.AdamOptimizer(1e-3).minimize(loss)
    return _meta(build)


def test_a_decoders_parts_give_way_to_the_tensor_the_author_named():
    outs, refused = _answer(_decoded(label_named=True))
    assert outs == ["dense_decoded:0"] or (outs is None and refused[1][0] == "dense_decoded:0"), (outs, refused)


def _loss_names_only():
    """A regression whose only names downstream of the prediction are tf.losses' own (the
    weights broadcast to its shape, the weighted value): the loss's names are not the author's."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        y = tf1.placeholder(tf.float32, [None, 2], name="y")
        pred = _dense(_dense(x, 4, "hidden", tf.nn.relu), 2, "head")
        loss = tf1.losses.mean_squared_error(y, pred)
        tf1.train.AdamOptimizer(1e-3).minimize(loss)
    return _meta(build)


def test_names_a_loss_function_gives_its_arithmetic_do_not_count():
    outs, refused = _answer(_loss_names_only())
    assert outs == ["head/BiasAdd:0"], (outs, refused)
