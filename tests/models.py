"""Checkpoints written by TensorFlow inside the tests (no binary fixtures).

Each builder trains nothing: it builds a graph the way the seed tutorials do,
initialises variables to non-trivial values, saves with ``tf.compat.v1.train.Saver``
and records the original model's outputs on fixed inputs, computed by
restoring the checkpoint into the original graph in a Session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

tf1 = tf.compat.v1
tf1.disable_eager_execution()
tf.get_logger().setLevel("ERROR")


@dataclass
class Model:
    directory: str
    feeds: Dict[str, np.ndarray]  # tensor name -> fixed input
    expected: Dict[str, np.ndarray]  # tensor name -> original model's output
    prefix: str = ""
    extra: dict = field(default_factory=dict)


def _variable(name, value, resource: bool):
    return tf1.get_variable(name, initializer=tf.constant(value), use_resource=resource)


def _save(directory: str, build: Callable, feeds: Dict[str, np.ndarray], fetches: List[str],
          saver_fn=None, steps: Optional[List[int]] = None, prefix_name: str = "model.ckpt",
          mutate=None) -> Model:
    """Build a graph, save it (at each of ``steps``), restore the last save in a
    fresh session and record ``fetches`` on ``feeds``."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        build()
        saver = saver_fn() if saver_fn else tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            prefix = None
            for i, step in enumerate(steps or [None]):
                if mutate is not None and i > 0:
                    mutate(sess, i)
                prefix = saver.save(sess, os.path.join(directory, prefix_name), global_step=step)
        with tf1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            values = sess.run(fetches, feed_dict=feeds)
    return Model(directory, feeds, dict(zip(fetches, values)), prefix=os.path.basename(prefix))


def seed_v1_v2(directory: str, resource: bool) -> Model:
    """Seed 000/001: two variables and their sum, no input at all."""
    def build():
        v1 = _variable("v1", [1.0], resource)
        v2 = _variable("v2", [2.0], resource)
        tf.add(v1, v2, name="add")
    return _save(directory, build, {}, ["add:0"])


def placeholders_global_step(directory: str, resource: bool) -> Model:
    """Seed 004: two placeholders times a variable, saved at global_step=1000."""
    def build():
        w1 = tf1.placeholder(tf.float32, name="w1")
        w2 = tf1.placeholder(tf.float32, name="w2")
        b1 = _variable("bias", 2.0, resource)
        tf.multiply(tf.add(w1, w2), b1, name="op_to_restore")
    feeds = {"w1:0": np.float32(4.0), "w2:0": np.float32(8.0)}
    return _save(directory, build, feeds, ["op_to_restore:0"], steps=[1000], prefix_name="my_test_model")


def dense(directory: str, resource: bool, steps=None, saver_keys: bool = False, collection: Optional[str] = None,
          mutate=None) -> Model:
    """x[?,3] @ w[3,2] + b with a global step; optionally renamed saver keys or
    the output registered in a collection (with a distracting second sink)."""
    rng = np.random.RandomState(0)
    w0 = rng.randn(3, 2).astype(np.float32)
    b0 = rng.randn(2).astype(np.float32)
    holder = {}

    def build():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = _variable("w", w0, resource)
        b = _variable("b", b0, resource)
        holder.update(w=w, b=b, gs=tf1.train.get_or_create_global_step())
        y = tf.add(tf.matmul(x, w), b, name="y")
        if collection:
            tf1.add_to_collection(collection, y)
            tf.reduce_sum(w, name="unrelated_sink")

    def saver_fn():
        if saver_keys:
            return tf1.train.Saver({"renamed/weights": holder["w"], "renamed/bias": holder["b"],
                                    "global_step": holder["gs"]})
        return tf1.train.Saver(max_to_keep=10)

    feeds = {"x:0": np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0}
    return _save(directory, build, feeds, ["y:0"], saver_fn=saver_fn, steps=steps,
                 mutate=(lambda sess, i: sess.run(holder["w"].assign(holder["w"] * 0 + float(i)))) if mutate else None)


def while_loop(directory: str, resource: bool) -> Model:
    """A while_loop (control flow v2 in TF 2.x) reading a variable inside the loop."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = _variable("w", np.array([[0.5, -1.0], [2.0, 0.25]], np.float32), resource)

        def body(i, acc):
            return i + 1, tf.tanh(tf.matmul(acc, w))

        _, out = tf.while_loop(lambda i, acc: i < 3, body, [tf.constant(0), x])
        tf.identity(out, name="out")
    feeds = {"x:0": np.array([[1.0, 2.0], [-0.5, 0.3]], np.float32)}
    return _save(directory, build, feeds, ["out:0"])


def several_steps(directory: str, resource: bool) -> Model:
    """Checkpoints at steps 1, 2, 3 with different weights (w = step-index)."""
    return dense(directory, resource, steps=[1, 2, 3], mutate=True)


def run_frozen(graph_bytes: bytes, feeds: Dict[str, np.ndarray], fetches: List[str]) -> List[np.ndarray]:
    """Import frozen GraphDef bytes into a fresh graph and run it."""
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf1.Session(graph=graph) as sess:
        return sess.run(fetches, feed_dict=feeds)


def graph_ops(graph_bytes: bytes) -> List[str]:
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    return [n.op for n in graph_def.node]


def variable_ops(directory: str) -> List[str]:
    """Op types of the variables in a saved meta graph (to prove ref vs resource)."""
    from tensorflow.core.protobuf import meta_graph_pb2

    meta_path = sorted(p for p in os.listdir(directory) if p.endswith(".meta"))[-1]
    meta = meta_graph_pb2.MetaGraphDef()
    with open(os.path.join(directory, meta_path), "rb") as fh:
        meta.ParseFromString(fh.read())
    return sorted({n.op for n in meta.graph_def.node if n.op in ("VariableV2", "VarHandleOp")
                   and not n.name.startswith("global_step")})


def edit_meta(directory: str, edit: Callable) -> None:
    """Rewrite every .meta in ``directory`` through ``edit(meta_graph_def)``."""
    from tensorflow.core.protobuf import meta_graph_pb2

    for name in os.listdir(directory):
        if name.endswith(".meta"):
            path = os.path.join(directory, name)
            meta = meta_graph_pb2.MetaGraphDef()
            with open(path, "rb") as fh:
                meta.ParseFromString(fh.read())
            edit(meta)
            with open(path, "wb") as fh:
                fh.write(meta.SerializeToString())
