"""What the resolver-principle fixtures build graphs with: a MetaGraphDef of a build function
(optionally with TensorFlow 1's while loops) and a dense layer whose variables a second call reuses."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tffreeze_server.core import resolve  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402

tf1 = tf.compat.v1


def meta(build, v1_loops=False):
    g = tf.Graph()
    was = tf1.control_flow_v2_enabled()
    if v1_loops:  # a while loop as TF1 builds it (Enter, Merge, NextIteration), not the functional While
        tf1.disable_control_flow_v2()
    try:
        with g.as_default():
            build()
            return tf1.train.export_meta_graph(graph=g)
    finally:
        if was:
            tf1.enable_control_flow_v2()


def dense(x, units, name, activation=None):
    with tf1.variable_scope(name, reuse=tf1.AUTO_REUSE):
        w = tf1.get_variable("kernel", [x.shape[-1], units])
        b = tf1.get_variable("bias", [units], initializer=tf1.zeros_initializer())
        y = tf.nn.bias_add(tf.matmul(x, w), b)
        return activation(y) if activation else y


def answer(meta):
    """(the outputs resolved without names, None), or (None, (the refusal's words, its candidates))."""
    try:
        return [t for t, _ in resolve.resolve(meta, [], []).outputs], None
    except FailedPrecondition as refused:
        return None, (str(refused), refused.metadata.get("candidates", "").split(","))
