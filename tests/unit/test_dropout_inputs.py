"""Trial 9 R3: a dropout whose keep probability (or rate) is a plain placeholder with an unusual
name stayed a required input with no word about it. The freeze now says which input decides the
draw and the bind that turns it off, with the value read from how the graph uses it (1 for a
keep probability, 0 for a rate), whatever the name."""

import os

import numpy as np
import pytest

from models import tf, tf1
from tffreeze_server.core import engine
from tffreeze_server.core.spec import FreezeSpec


def _saved(directory, name, style):
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        y = tf1.placeholder(tf.int32, [None], name="y")
        p = tf1.placeholder(tf.float32, [], name=name)
        w1, w2 = tf1.get_variable("w1", [4, 8]), tf1.get_variable("w2", [8, 3])
        h = tf.nn.relu(tf.matmul(x, w1))
        h = tf1.nn.dropout(h, keep_prob=p) if style == "keep" else tf.nn.dropout(h, rate=p)
        logits = tf.matmul(h, w2)
        tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        train = tf1.train.AdamOptimizer().minimize(loss)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train, {x: np.ones((2, 4)), y: [0, 1], p: 0.5})
            tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))
    return directory


@pytest.mark.parametrize("name,style,value", [("dropout_prob", "keep", "1"), ("kp", "keep", "1"),
                                               ("p", "rate", "0"), ("noise_amount", "rate", "0")])
def test_the_input_deciding_a_dropout_is_named_with_the_bind_that_turns_it_off(tmp_path, name, style, value):
    d = _saved(str(tmp_path / "m"), name, style)
    result = engine.freeze(d, FreezeSpec(), str(tmp_path / "out.pb"))
    assert "%s:0" % name in [i.name for i in result.inputs]
    said = [w for w in result.warnings if "%s:0 decide the random draw" % name in w]
    assert said and "options.bind %s=%s" % (name, value) in said[0], result.warnings
