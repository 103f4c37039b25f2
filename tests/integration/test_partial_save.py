"""A partial save (a Saver given some of the variables, as in the seed tutorials): the new-user
trial found each fix a refusal offered led to the other refusal. Now the refusal offers what
works, inspect says so before a freeze, and following each piece of advice freezes a graph
that runs with the checkpoint's values."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import models
from tffreeze import FailedPreconditionError

tf1 = tf.compat.v1


def _two_layers(directory: str, zero_second_bias: bool):
    """x -> relu(x w1 + b1) -> (. w2 + b2) -> softmax, the Saver given w1 and b1 only."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    rng = np.random.RandomState(3)
    feed = rng.randn(2, 4).astype(np.float32)
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        w1 = tf1.get_variable("w1", initializer=tf.constant(rng.randn(4, 8).astype(np.float32)))
        b1 = tf1.get_variable("b1", initializer=tf.constant(rng.randn(8).astype(np.float32)))
        h = tf.nn.relu(tf.matmul(x, w1) + b1, name="Relu")
        w2 = tf1.get_variable("w2", [8, 3])  # a random initializer: no constant to fall back on
        b2 = tf1.get_variable("b2", initializer=tf.zeros([3]) if zero_second_bias else tf.random.normal([3]))
        logits = tf.add(tf.matmul(h, w2), b2, name="logits")
        tf.nn.softmax(logits, name="probs")
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver(var_list=[w1, b1]).save(sess, os.path.join(directory, "model.ckpt"))
            hidden = sess.run(h, {x: feed})
    return feed, hidden


def test_the_refusal_offers_what_the_saved_variables_compute_and_that_works(client, tmp_path):
    feed, hidden = _two_layers(str(tmp_path / "p"), zero_second_bias=False)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "p"))
    msg = str(err.value)
    assert "w2 (checkpoint key 'w2')" in msg and "b2 (checkpoint key 'b2')" in msg, msg
    assert "freeze what the saved variables compute alone (options.outputs Relu:0)" in msg, msg
    assert "var_map" not in msg and "exclude_variables" not in msg, msg  # neither would work here
    assert err.value.metadata["outputs_partial"] == "Relu:0"
    # inspect says it before any freeze
    shown = client.inspect(str(tmp_path / "p"))
    assert any("the checkpoint has no value for w2, b2" in w and "compute Relu:0" in w for w in shown.warnings), \
        list(shown.warnings)
    # following the advice freezes a graph that runs with the checkpoint's values
    out = client.freeze(str(tmp_path / "p"), outputs=["Relu:0"])
    got = models.run_frozen(out.graph_bytes, {"x:0": feed}, ["Relu:0"])[0]
    np.testing.assert_allclose(got, hidden, rtol=1e-6)


def test_constant_initial_values_are_offered_when_they_are_constants(client, tmp_path):
    """w2 is random but b2 zeros: excluding only b2 would not do, so it is not offered."""
    _two_layers(str(tmp_path / "p"), zero_second_bias=True)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "p"))
    assert "exclude_variables" not in str(err.value) and "options.outputs Relu:0" in str(err.value)


def test_including_only_the_saved_variables_says_the_others_cannot_be_included(client, tmp_path):
    """--include-variables w1,b1 (the saved ones): w2 then needs its initial value, which is
    random; the refusal names the option and says what the saved variables compute alone,
    instead of "include it" (which the first refusal had already ruled out)."""
    _two_layers(str(tmp_path / "p"), zero_second_bias=False)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "p"), include_variables=["w1", "b1"])
    msg = str(err.value)
    assert "the checkpoint has no value for it either: freeze what the saved variables compute alone " \
           "(options.outputs Relu:0)" in msg and "include it" not in msg, msg
    assert err.value.metadata["field"] == "options.include_variables"
    assert "[outputs:" not in msg  # the fix is the option, not other outputs
