"""Trial 15, F01 and F10: a batch norm written by hand with ``tf.cond`` could not be frozen when
its predicate was a constant (``tf.cond(tf.constant(False), ...)`` in a graph built for one mode),
nor when it was computed from a bound switch (``logical_not(is_eval)``); the refusal advised
``is_eval=false``, the training value. Conditions on constants now fold, and the advice names the
value that leaves no training op."""

import os

import numpy as np
import pytest

from models import run_frozen, tf, tf1
from tffreeze_server.core import engine
from tffreeze_server.core.errors import FailedPrecondition
from tffreeze_server.core.spec import FreezeSpec
from tffreeze_api import options


def _batch_norm(x, training, name):
    with tf1.variable_scope(name, reuse=tf1.AUTO_REUSE):
        mean = tf1.get_variable("moving_mean", [x.shape[-1]], initializer=tf1.zeros_initializer(), trainable=False)
        var = tf1.get_variable("moving_variance", [x.shape[-1]], initializer=tf1.ones_initializer(), trainable=False)

        def batch_stats():
            m, v = tf.nn.moments(x, [0])
            with tf.control_dependencies([tf1.assign(mean, 0.9 * mean + 0.1 * m), tf1.assign(var, 0.9 * var + 0.1 * v)]):
                return tf.identity(m), tf.identity(v)
        m, v = tf.cond(training, batch_stats, lambda: (tf.identity(mean), tf.identity(var)))
        return tf.nn.batch_normalization(x, m, v, None, None, 1e-3)


def _save(directory, build, v1_control_flow=False):
    """Train a few steps with the training graph, save, then ``build`` the graph to freeze in a
    new graph and save it with the trained values. Returns (folder, x fed, what the session gave)."""
    was = tf1.control_flow_v2_enabled()
    if v1_control_flow:
        tf1.disable_control_flow_v2()
    try:
        xs = np.random.RandomState(0).rand(5, 6).astype(np.float32)
        g = tf.Graph()
        with g.as_default():
            x = tf1.placeholder(tf.float32, [None, 6], name="x")
            h = _batch_norm(tf.matmul(x, tf1.get_variable("w", [6, 4])), tf.constant(True), "bn")
            train = tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(h)))
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                for _ in range(3):
                    sess.run(train, {x: xs})
                tf1.train.Saver().save(sess, os.path.join(directory, "trained", "model.ckpt"))
        g = tf.Graph()
        with g.as_default():
            feed = build()
            with tf1.Session() as sess:
                saver = tf1.train.Saver()
                saver.restore(sess, os.path.join(directory, "trained", "model.ckpt"))
                expected = sess.run("out:0", dict({"x:0": xs}, **feed))
                saver.save(sess, os.path.join(directory, "model", "model.ckpt"))
        return os.path.join(directory, "model"), xs, expected
    finally:
        if was:
            tf1.enable_control_flow_v2()


def _run(pb, xs):
    with open(pb, "rb") as fh:
        return run_frozen(fh.read(), {"x:0": xs}, ["out:0"])[0]


def _inference_graph():
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    h = _batch_norm(tf.matmul(x, tf1.get_variable("w", [6, 4])), tf.constant(False), "bn")
    tf.identity(tf.nn.relu(h), name="out")
    return {}


@pytest.mark.parametrize("v1_control_flow", [False, True])
def test_a_cond_on_a_constant_folds_to_its_branch(tmp_path, v1_control_flow):
    model, xs, expected = _save(str(tmp_path), _inference_graph, v1_control_flow)
    out = str(tmp_path / "out.pb")
    result = engine.freeze(model, FreezeSpec(), out)
    assert [o.name for o in result.outputs] == ["out:0"]
    np.testing.assert_allclose(_run(out, xs), expected, atol=1e-5)


def _inverted_switch():
    x = tf1.placeholder(tf.float32, [None, 6], name="x")
    is_eval = tf1.placeholder(tf.bool, [], name="is_eval")
    h = _batch_norm(tf.matmul(x, tf1.get_variable("w", [6, 4])), tf.logical_not(is_eval), "bn")
    tf.identity(tf.nn.relu(h), name="out")
    return {"is_eval:0": True}


def test_a_switch_that_means_evaluation_is_advised_and_bound_by_its_inference_value(tmp_path):
    model, xs, expected = _save(str(tmp_path), _inverted_switch)
    out = str(tmp_path / "out.pb")
    with pytest.raises(FailedPrecondition) as refused:
        engine.freeze(model, FreezeSpec(), out)
    assert "is_eval=true" in refused.value.message and "is_eval=false" not in refused.value.message, \
        refused.value.message
    engine.freeze(model, FreezeSpec.from_options(options.freeze_options(bind={"is_eval": True})), out)
    np.testing.assert_allclose(_run(out, xs), expected, atol=1e-5)
