"""Principles restated after the two wrong answers the second round of untried model kinds left
(issue 33): a library cross-entropy says which operand is the prediction, so what its logits are
computed from is an input (a few-shot model's labelled support set); logits the graph computes on
from outside the loss (a softmax) are the prediction, even when loss arithmetic over copies of
one network made them; a tensor taken out of an inference computation that goes on with layers
of its own leaves the choice open, the tap listed first."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tffreeze_server.core import resolve  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402

tf1 = tf.compat.v1


def _meta(build):
    g = tf.Graph()
    with g.as_default():
        build()
        return tf1.train.export_meta_graph(graph=g)


def _dense(x, units, name, activation=None):
    with tf1.variable_scope(name, reuse=tf1.AUTO_REUSE):
        w = tf1.get_variable("kernel", [x.shape[-1], units])
        b = tf1.get_variable("bias", [units], initializer=tf1.zeros_initializer())
        y = tf.nn.bias_add(tf.matmul(x, w), b)
        return activation(y) if activation else y


def _encoder(x):
    with tf1.variable_scope("encoder", reuse=tf1.AUTO_REUSE):
        return _dense(_dense(x, 8, "h", tf.nn.relu), 4, "emb")


def _few_shot():
    """Class means of the support embeddings (chosen by the support labels) score the queries;
    the loss compares the queries' logits with the query labels."""
    support_x = tf1.placeholder(tf.float32, [None, 6], name="support_x")
    support_y = tf1.placeholder(tf.int32, [None], name="support_y")
    query_x = tf1.placeholder(tf.float32, [None, 6], name="query_x")
    query_y = tf1.placeholder(tf.int32, [None], name="query_y")
    onehot = tf.one_hot(support_y, 3)
    means = tf.matmul(onehot, _encoder(support_x), transpose_a=True) / tf.reduce_sum(onehot, 0)[:, None]
    logits = tf.negative(tf.reduce_sum(tf.square(_encoder(query_x)[:, None, :] - means[None]), 2), name="logits")
    tf.nn.softmax(logits, name="query_probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=query_y, logits=logits))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_what_a_cross_entropy_computes_its_logits_from_is_an_input_not_a_label():
    meta = _meta(_few_shot)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["query_probs:0"]
    compared = [e.why for e in resolve.explain(meta) if e.rule == "loss-meets-model" and e.tensor == "logits:0"]
    assert compared and "query_y" in compared[0] and "support_y" not in compared[0], compared


def _cosine_classifier():
    """Each class is one anchor example fed beside the batch; the logits are the cosine
    similarities of the two copies of one encoder, compared with the labels; a softmax serves."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    anchors = tf1.placeholder(tf.float32, [3, 6], name="class_anchors")
    y = tf1.placeholder(tf.int32, [None], name="y")
    sims = tf.matmul(tf.nn.l2_normalize(_encoder(x), 1), tf.nn.l2_normalize(_encoder(anchors), 1), transpose_b=True)
    logits = tf.multiply(sims, 10.0, name="logits")
    tf.nn.softmax(logits, name="probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)


def test_logits_the_graph_computes_on_from_beside_the_loss_are_the_prediction():
    meta = _meta(_cosine_classifier)
    assert [t for t, _ in resolve.resolve(meta, [], []).outputs] == ["probs:0"]
    records = resolve.explain(meta)
    assert [e.claim.name for e in records if e.tensor == "logits:0" and e.rule == "loss-meets-model"] == ["PREDICTION"]
    assert not [e for e in records if e.rule == "shared-weight-copies"]


def _self_supervised():
    """Two noisy views through one encoder that returns (representation, projection); a loss
    with no labels compares the projections; the inference branch names the representation."""
    x = tf1.placeholder(tf.float32, [None, 6], name="x")

    def encoder(v):
        with tf1.variable_scope("online", reuse=tf1.AUTO_REUSE):
            rep = _dense(v, 8, "rep", tf.nn.relu)
            return rep, _dense(_dense(rep, 8, "p1", tf.nn.relu), 4, "p2")
    _, z1 = encoder(x + tf1.random_normal(tf.shape(x)))
    _, z2 = encoder(x + tf1.random_normal(tf.shape(x)))
    loss = tf.reduce_mean(tf.square(tf.nn.l2_normalize(z1, 1) - tf.stop_gradient(tf.nn.l2_normalize(z2, 1))))
    tf1.train.AdamOptimizer(1e-3).minimize(loss)
    tf.identity(encoder(x)[0], name="representation")


def test_a_tap_on_an_inference_computation_leaves_the_choice_open_tap_first():
    with pytest.raises(FailedPrecondition) as err:
        resolve.resolve(_meta(_self_supervised), [], [])
    assert err.value.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS"
    listed = err.value.metadata["candidates"].split(",")
    assert listed[0] == "representation:0" and len(listed) == 2
    assert "online_2/p2/BiasAdd:0" in listed
