"""core/constvalues.py: constant sub-graphs evaluated in numpy as TensorFlow would."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tffreeze_server.core.constvalues import Evaluator  # noqa: E402


def test_broadcast_args_gives_the_shape_broadcast_to_gets():
    """tf.linspace and tf.random.gamma size a BroadcastTo by BroadcastArgs of constant shapes."""
    graph = tf.Graph()
    with graph.as_default():
        shape = tf.raw_ops.BroadcastArgs(s0=tf.constant([2, 1, 3]), s1=tf.constant([4, 1]))
        wide = tf.raw_ops.BroadcastArgs(s0=tf.constant([5], tf.int64), s1=tf.constant([], tf.int64))
        clash = tf.raw_ops.BroadcastArgs(s0=tf.constant([2, 3]), s1=tf.constant([4]))
        filled = tf.broadcast_to(tf.constant(1.5), shape)
    values = Evaluator(graph.as_graph_def().node)
    np.testing.assert_array_equal(values.value(shape.name), [2, 4, 3])
    assert values.value(shape.name).dtype == np.int32
    np.testing.assert_array_equal(values.value(wide.name), [5])
    assert values.value(wide.name).dtype == np.int64
    assert values.value(clash.name) is None  # TensorFlow refuses it too
    assert values.value(filled.name).shape == (2, 4, 3)


def test_a_value_refused_for_its_size_says_so():
    """refused_size: the elements of the value over the bound, on the way to a tensor (a table's
    keys from tf.range over the cap are too large, not "not from constants"); 0 for a value
    that is not computable for another reason, or when another missing input is."""
    graph = tf.Graph()
    with graph.as_default():
        big = tf.range(1000) * 2
        other = tf.strings.to_number(tf.constant(["1"]))
        mixed = tf.concat([tf.cast(tf.range(1000), tf.float32), other], 0)
        small = tf.range(10)
    values = Evaluator(graph.as_graph_def().node, max_elements=100)
    assert values.value(big.name) is None and values.refused_size(big.name) == 1000
    assert values.value(other.name) is None and values.refused_size(other.name) == 0
    assert values.refused_size(mixed.name) == 0
    assert values.refused_size(small.name) == 0 and values.value(small.name).size == 10
