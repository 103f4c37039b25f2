"""A boolean switch with a default, whatever its name (``train_bn``, ``bn_mode``), that selects
batch norm's batch statistics when fed True: its default is what the graph computes unfed, and
its other value needs moving-average updates a frozen graph cannot make. It is bound to that
default, with the reason, instead of the freeze being refused as TRAINING_OP_NEEDED (issue 33:
an inpainting network's ``train_bn`` switch)."""

import os

import numpy as np
import pytest

from models import tf, tf1
from tffreeze_server.core import engine
from tffreeze_server.core.spec import FreezeSpec


def _saved(directory, v2_cond, default=False, name="train_bn"):
    g = tf.Graph()
    was = tf1.control_flow_v2_enabled()
    (tf1.enable_control_flow_v2 if v2_cond else tf1.disable_control_flow_v2)()
    try:
        with g.as_default():
            x = tf1.placeholder(tf.float32, [None, 2, 2, 3], name="image")
            y = tf1.placeholder(tf.float32, [None, 4], name="target")
            switch = tf1.placeholder_with_default(default, [], name=name)
            h = tf.nn.conv2d(x, tf1.get_variable("k", [1, 1, 3, 4]), 1, "SAME")
            scale, offset = tf1.get_variable("gamma", [4], initializer=tf1.ones_initializer()), \
                tf1.get_variable("beta", [4], initializer=tf1.zeros_initializer())
            mm = tf1.get_variable("moving_mean", [4], initializer=tf1.zeros_initializer(), trainable=False)
            mv = tf1.get_variable("moving_variance", [4], initializer=tf1.ones_initializer(), trainable=False)

            def batch_statistics():
                out, mean, var = tf1.nn.fused_batch_norm(h, scale, offset, is_training=True)
                with tf1.control_dependencies([tf1.assign(mm, 0.9 * mm + 0.1 * mean),
                                               tf1.assign(mv, 0.9 * mv + 0.1 * var)]):
                    return tf.identity(out)

            def moving_statistics():
                return tf1.nn.fused_batch_norm(h, scale, offset, mean=mm, variance=mv, is_training=False)[0]
            normed = tf.cond(switch, batch_statistics, moving_statistics)
            pred = tf.identity(tf.reduce_mean(tf.nn.relu(normed), [1, 2]), name="pred")
            train = tf1.train.AdamOptimizer(0.01).minimize(tf.reduce_mean(tf.square(pred - y)))
            rng = np.random.default_rng(0)
            with tf1.Session() as sess:
                sess.run(tf1.global_variables_initializer())
                for _ in range(3):
                    sess.run(train, {x: rng.random((4, 2, 2, 3)), y: rng.random((4, 4)), switch: True})
                feeds = rng.random((5, 2, 2, 3)).astype(np.float32)
                want = sess.run(pred, {x: feeds})  # unfed: its default
                tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))
    finally:
        (tf1.enable_control_flow_v2 if was else tf1.disable_control_flow_v2)()
    return directory, feeds, want


def _run(path, feeds):
    gd = tf1.GraphDef()
    gd.ParseFromString(open(path, "rb").read())
    g = tf.Graph()
    with g.as_default():
        tf1.import_graph_def(gd, name="")
        with tf1.Session() as sess:
            return gd, sess.run("pred:0", {"image:0": feeds})


@pytest.mark.parametrize("v2_cond", [False, True], ids=["v1-cond", "v2-if"])
def test_a_switch_whose_default_selects_moving_statistics_is_bound_to_it(tmp_path, v2_cond):
    directory, feeds, want = _saved(str(tmp_path / "m"), v2_cond)
    result = engine.freeze(directory, FreezeSpec(), str(tmp_path / "auto.pb"))
    assert [o.name for o in result.outputs] == ["pred:0"]
    assert [(b.name, b.reason.split(",")[0]) for b in result.bindings] == [
        ("train_bn:0", "its default")], result.bindings
    assert "moving statistics" in result.bindings[0].reason
    gd, got = _run(str(tmp_path / "auto.pb"), feeds)
    assert not [n.name for n in gd.node if n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_switch_whose_default_selects_batch_statistics_is_not_bound(tmp_path):
    """Default True: unfed, the model runs on batch statistics; binding changes nothing the user
    has not chosen, so the refusal with its advice stands."""
    directory, _, _ = _saved(str(tmp_path / "m"), False, default=True)
    with pytest.raises(Exception) as refused:
        engine.freeze(directory, FreezeSpec(), str(tmp_path / "auto.pb"))
    assert "TRAINING_OP_NEEDED" in getattr(refused.value, "reason", ""), refused.value


def test_a_switch_the_names_do_not_tell_is_advised_when_its_training_branch_is_refused(tmp_path):
    """Trial 12, finding 5: a bool placeholder named train_flag (no default) selecting a branch that
    updates moving averages was refused as TRAINING_OP_NEEDED with advice that did not work; the
    bind that does is now said first."""
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        y = tf1.placeholder(tf.float32, [None, 2], name="y")
        flag = tf1.placeholder(tf.bool, [], name="train_flag")
        h = tf.matmul(x, tf1.get_variable("w", [3, 2]))
        mm = tf1.get_variable("moving_mean", [2], initializer=tf1.zeros_initializer(), trainable=False)

        def train_branch():
            m = tf.reduce_mean(h, 0)
            with tf1.control_dependencies([tf1.assign_sub(mm, (mm - m) * 0.1)]):
                return h - m
        out = tf.identity(tf.cond(flag, train_branch, lambda: h - mm), name="out")
        train = tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(out - y)))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train, {x: np.ones((2, 3)), y: np.ones((2, 2)), flag: True})
            tf1.train.Saver().save(sess, str(tmp_path / "m" / "model.ckpt"))
    with pytest.raises(Exception) as refused:
        engine.freeze(str(tmp_path / "m"), FreezeSpec(outputs=["out"]), str(tmp_path / "o.pb"))
    assert "TRAINING_OP_NEEDED" in getattr(refused.value, "reason", ""), refused.value
    assert "options.bind train_flag=false" in str(refused.value), refused.value
    done = engine.freeze(str(tmp_path / "m"), FreezeSpec(outputs=["out"], bind={"train_flag": False}),
                         str(tmp_path / "o.pb"))
    assert [o.name for o in done.outputs] == ["out:0"]
