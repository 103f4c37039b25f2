"""Trial 10, finding 1: with two Savers in the graph, the freeze restored values through the one
created last, not the one whose save() wrote the checkpoint (the one the .meta's saver_def names):
swapped weights, or the moving averages without --ema, at exit 0."""

import os

import numpy as np
import pytest

from models import tf, tf1
from tffreeze_server.core import engine
from tffreeze_server.core.spec import FreezeSpec


def _saved(directory, kind):
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w1 = tf1.get_variable("w1", [3, 3], initializer=tf1.random_normal_initializer(seed=1))
        w2 = tf1.get_variable("w2", [3, 3], initializer=tf1.random_normal_initializer(seed=2))
        out = tf.identity(tf.matmul(tf.nn.relu(tf.matmul(x, w1)), w2), name="out")
        if kind == "swapped":
            writer = tf1.train.Saver({"a": w1, "b": w2})
            tf1.train.Saver({"b": w1, "a": w2})  # another Saver, created after the one that writes
        else:
            ema = tf1.train.ExponentialMovingAverage(0.5)
            with tf.control_dependencies([tf1.assign_add(w1, tf.ones_like(w1))]):
                update = ema.apply([w1, w2])
            writer = tf1.train.Saver()
            tf1.train.Saver(ema.variables_to_restore())  # the evaluation Saver the tutorials add
        feeds = np.random.default_rng(0).random((4, 3)).astype(np.float32)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            if kind != "swapped":
                sess.run(update)
            want = sess.run(out, {x: feeds})
            writer.save(sess, os.path.join(directory, "model.ckpt"))
    return directory, feeds, want


@pytest.mark.parametrize("kind", ["swapped", "moving_averages"])
def test_the_saver_that_wrote_the_checkpoint_decides_which_key_restores_a_variable(tmp_path, kind):
    directory, feeds, want = _saved(str(tmp_path / kind), kind)
    out = tmp_path / "out.pb"
    engine.freeze(directory, FreezeSpec(outputs=["out"]), str(out))
    gd = tf1.GraphDef()
    gd.ParseFromString(out.read_bytes())
    g = tf.Graph()
    with g.as_default():
        tf1.import_graph_def(gd, name="")
        with tf1.Session() as sess:
            got = sess.run("out:0", {"x:0": feeds})
    assert np.allclose(got, want, atol=1e-6), float(np.max(np.abs(got - want)))
