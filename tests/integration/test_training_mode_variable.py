"""Issue 33, found by the library corpus (tflearn, built by its own code): a model whose training
mode is a bool *variable* that its fit sets True, read by v1 conds (dropout), with layer
listings in collections. Written here with TensorFlow alone, the same structure:

* the variable, saved True mid-training, is a training switch like a placeholder one: frozen at
  its inference value, with a warning (it crashed TensorFlow's converter, "index 1 is out of
  range", and once that was fixed the graph froze with dropout on);
* a collection listing successive layers (``activations``) gives its last layer as the
  output, not every layer; one input listed by two collections is one input."""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

import models

tf1 = tf.compat.v1


def _training_mode_variable(directory: str):
    os.makedirs(directory, exist_ok=True)
    rng = np.random.RandomState(5)
    feed = rng.randn(4, 6).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default(), models.control_flow_v1(True):
        x = tf1.placeholder(tf.float32, [None, 6], name="input/X")
        y_true = tf1.placeholder(tf.float32, [None, 3], name="target/Y")
        is_training = tf1.get_variable("is_training", initializer=False, trainable=False,
                                       use_resource=False)
        w1 = tf1.get_variable("fc/W", initializer=tf.constant(rng.randn(6, 8).astype(np.float32)), use_resource=False)
        w2 = tf1.get_variable("out/W", initializer=tf.constant(rng.randn(8, 3).astype(np.float32)), use_resource=False)
        h = tf.tanh(tf.matmul(x, w1), name="fc/Tanh")
        dropped = tf1.cond(is_training, lambda: tf1.nn.dropout(h, keep_prob=0.5), lambda: h, name="Dropout")
        probs = tf.nn.softmax(tf.matmul(dropped, w2), name="out/Softmax")
        loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y_true, logits=tf.math.log(probs)))
        train = tf1.train.AdamOptimizer(0.01).minimize(loss)
        for t in (h, probs):
            tf1.add_to_collection("activations", t)
        tf1.add_to_collection("inputs", x)
        tf1.add_to_collection("layer_tensor/input", x)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(is_training.assign(True))  # as a fit does
            sess.run(train, {x: feed, y_true: np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]})
            tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))  # saved in training mode
            expected = sess.run(probs, {x: feed, is_training: False})
    return feed, expected


def test_a_training_mode_variable_is_frozen_at_its_inference_value(client, tmp_path):
    feed, expected = _training_mode_variable(str(tmp_path / "m"))
    for named in (["out/Softmax:0"], []):
        outcome = client.freeze(str(tmp_path / "m"), outputs=named)
        assert [t["name"] for t in outcome.manifest["outputs"]] == ["out/Softmax:0"], outcome.manifest["outputs"]
        assert [t["name"] for t in outcome.manifest["inputs"]] == ["input/X:0"], outcome.manifest["inputs"]
        assert any("is_training is a training switch kept in a variable, saved true (mid-training): frozen at its "
                   "inference value false" in w for w in outcome.manifest["warnings"]), outcome.manifest["warnings"]
        for _ in range(2):  # no dropout left: the same answer each run, the checkpoint's in inference mode
            got = models.run_frozen(outcome.graph_bytes, {"input/X:0": feed}, ["out/Softmax:0"])[0]
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
