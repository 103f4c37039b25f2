"""Trial 10, finding 2 (BLOCKER) and finding 4: TF1 code run on TensorFlow 2 with only eager
execution off builds `tf.cond` as a v2 `If` whose predicate is `Squeeze(is_training)`. Binding the
switch did not fold that `If` (the squeeze hid the constant), so a batch norm whose training branch
assigns its moving averages was refused as TRAINING_OP_NEEDED whatever the user did, and a dropout
under the switch was warned of as live although the bound switch never takes it."""

import os

import numpy as np
import pytest

from models import tf, tf1
from tffreeze_server.core import engine
from tffreeze_server.core.spec import FreezeSpec


def _saved(directory, kind):
    g = tf.Graph()
    assert tf1.control_flow_v2_enabled()  # (TensorFlow 2's default: the cond is a v2 If)
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        y = tf1.placeholder(tf.float32, [None, 2], name="y")
        is_training = tf1.placeholder(tf.bool, name="is_training")
        h = tf.matmul(x, tf1.get_variable("w", [3, 2]))
        if kind == "batch_norm":
            mm = tf1.get_variable("moving_mean", [2], initializer=tf1.zeros_initializer(), trainable=False)

            def train_branch():
                m = tf.reduce_mean(h, 0)
                with tf1.control_dependencies([tf1.assign(mm, 0.9 * mm + 0.1 * m)]):
                    return h - m
            out = tf.cond(is_training, train_branch, lambda: h - mm)
        else:
            out = tf.cond(is_training, lambda: tf.nn.dropout(h, rate=0.5), lambda: h)
        out = tf.identity(out, name="out")
        train = tf1.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(out - y)))
        rng = np.random.default_rng(0)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(3):
                sess.run(train, {x: rng.random((4, 3)), y: rng.random((4, 2)), is_training: True})
            feeds = rng.random((5, 3)).astype(np.float32)
            want = sess.run(out, {x: feeds, is_training: False})
            tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))
    assert any(n.op in ("If", "StatelessIf") for n in g.as_graph_def().node)
    return directory, feeds, want


@pytest.mark.parametrize("kind", ["batch_norm", "dropout"])
def test_a_v2_cond_on_the_bound_switch_is_folded_to_its_inference_branch(tmp_path, kind):
    directory, feeds, want = _saved(str(tmp_path / kind), kind)
    out = tmp_path / "out.pb"
    result = engine.freeze(directory, FreezeSpec(outputs=["out"]), str(out))
    assert [b.name for b in result.bindings] == ["is_training:0"]
    assert not any("random op" in w for w in result.warnings), result.warnings
    gd = tf1.GraphDef()
    gd.ParseFromString(out.read_bytes())
    assert not [n.op for n in gd.node if n.op in ("If", "StatelessIf", "RandomUniform", "AssignVariableOp")]
    g = tf.Graph()
    with g.as_default():
        tf1.import_graph_def(gd, name="")
        with tf1.Session() as sess:
            got = sess.run("out:0", {"x:0": feeds})
    assert np.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("kind", ["batch_norm", "dropout"])
def test_without_names_the_output_after_the_v2_cond_is_resolved(tmp_path, kind):
    """The branch's assignment updates the moving mean in place, as a v1 batch norm's update does:
    the variable is the trained model's, not a fixed network's that scores the output before it."""
    directory, feeds, want = _saved(str(tmp_path / kind), kind)
    result = engine.freeze(directory, FreezeSpec(), str(tmp_path / "auto.pb"))
    assert [o.name for o in result.outputs] == ["out:0"], result.outputs
