"""A collection lists the outputs its author had when it was written (issue 34, trial 12's
finding 2; issue 33).

``import_meta_graph`` keeps the base model's collections, so a graph trained further (a new
head, its own loss and optimizer) still lists the base model's prediction. When what the
training trains computes from variables that no listed output reads, the collection no longer
speaks for the graph: a freeze without names asks, with the trained head first. A collection
that lists a view of what the training trains (an argmax beside the softmax the loss reads) is
still the answer. Each fixture is a small graph written for the principle."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

import principle_graphs  # noqa: E402

tf1 = tf.compat.v1
_meta, _dense, _answer = principle_graphs.meta, principle_graphs.dense, principle_graphs.answer


def _base(x):
    """A regression trunk and head, listed in a collection, with the loss it was trained on."""
    trunk = _dense(x, 8, "trunk", tf.nn.relu)
    value = tf.identity(_dense(trunk, 1, "value_head"), name="value")
    tf1.add_to_collection("predictions", value)
    target = tf1.placeholder(tf.float32, [None, 1], name="target")
    tf1.train.AdamOptimizer().minimize(tf.reduce_mean(tf.square(value - target)))
    return trunk


def test_a_head_trained_after_the_collection_was_written_makes_the_answer_unsure():
    def build():
        x = tf1.placeholder(tf.float32, [None, 5], name="features")
        trunk = _base(x)
        # later: a classifier on the same trunk, its own labels, loss and optimizer
        logits = _dense(trunk, 4, "classifier")
        tf.nn.softmax(logits, name="class_probs")
        labels = tf1.placeholder(tf.int32, [None], name="classes")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss, var_list=tf1.trainable_variables("classifier"))
    outputs, refused = _answer(_meta(build))
    assert outputs is None, outputs
    words, candidates = refused
    assert "collection 'predictions' lists value:0" in words, words
    assert candidates[-1] == "value:0" and candidates[0] == "class_probs:0", candidates


def test_a_collection_that_lists_a_view_of_the_trained_head_still_answers():
    def build():
        x = tf1.placeholder(tf.float32, [None, 5], name="features")
        logits = _dense(_dense(x, 8, "trunk", tf.nn.relu), 4, "classifier")
        tf1.add_to_collection("outputs", tf.argmax(logits, 1, name="predicted_class"))
        labels = tf1.placeholder(tf.int32, [None], name="classes")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        tf1.train.AdamOptimizer().minimize(loss)
    assert _answer(_meta(build)) == (["predicted_class:0"], None)


def test_the_base_model_alone_is_answered_by_its_collection():
    def build():
        _base(tf1.placeholder(tf.float32, [None, 5], name="features"))
    assert _answer(_meta(build)) == (["value:0"], None)
