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


def partial_save(directory: str) -> Model:
    """x @ w + b where the saver was given w only (a partial save, as in the seeds): b has no value."""
    rng = np.random.RandomState(0)
    holder = {}

    def build():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        holder["w"] = _variable("w", rng.randn(3, 2).astype(np.float32), True)
        b = _variable("b", np.zeros(2, np.float32), True)
        tf.add(tf.matmul(x, holder["w"]), b, name="y")

    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        build()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            prefix = tf1.train.Saver([holder["w"]]).save(sess, os.path.join(directory, "model.ckpt"))
    return Model(directory, {}, {}, prefix=os.path.basename(prefix))


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


def _edit_proto(path: str, message, edit: Callable) -> None:
    """Parse ``path`` into ``message``, apply ``edit(message)``, write it back."""
    with open(path, "rb") as fh:
        message.ParseFromString(fh.read())
    edit(message)
    with open(path, "wb") as fh:
        fh.write(message.SerializeToString())


def edit_meta(directory: str, edit: Callable) -> None:
    """Rewrite every .meta in ``directory`` through ``edit(meta_graph_def)``."""
    from tensorflow.core.protobuf import meta_graph_pb2

    for name in os.listdir(directory):
        if name.endswith(".meta"):
            _edit_proto(os.path.join(directory, name), meta_graph_pb2.MetaGraphDef(), edit)


def edit_saved_model(directory: str, edit: Callable) -> None:
    """Rewrite ``directory``/saved_model.pb through ``edit(saved_model)``."""
    from tensorflow.core.protobuf import saved_model_pb2

    _edit_proto(os.path.join(directory, "saved_model.pb"), saved_model_pb2.SavedModel(), edit)


# ---------------------------------------------------------------------------
# Checkpoints users bring straight from training (issue: breadth of sources).

import contextlib  # noqa: E402


@contextlib.contextmanager
def control_flow_v1(enabled: bool):
    """Build with control flow v1 (Enter/Exit/Switch/Merge) instead of While/If."""
    if not enabled:
        yield
        return
    tf1.disable_control_flow_v2()
    try:
        yield
    finally:
        tf1.enable_control_flow_v2()


def _batch_norm(x, is_training, name, resource, fused):
    """Batch norm with moving statistics behind tf.cond(is_training), as TF1 models wrote it."""
    channels = int(x.shape[-1])
    with tf1.variable_scope(name):
        gamma = tf1.get_variable("gamma", initializer=tf.constant(np.linspace(0.5, 1.5, channels, dtype=np.float32)),
                                 use_resource=resource)
        beta = tf1.get_variable("beta", initializer=tf.constant(np.linspace(-0.2, 0.2, channels, dtype=np.float32)),
                                use_resource=resource)
        mm = tf1.get_variable("moving_mean", initializer=tf.zeros([channels]), trainable=False, use_resource=resource)
        mv = tf1.get_variable("moving_variance", initializer=tf.ones([channels]), trainable=False,
                              use_resource=resource)
        if fused:
            def train():
                y, mean, var = tf1.nn.fused_batch_norm(x, gamma, beta, epsilon=1e-3, is_training=True)
                updates = [tf1.assign(mm, mm * 0.9 + mean * 0.1), tf1.assign(mv, mv * 0.9 + var * 0.1)]
                with tf.control_dependencies(updates):
                    return tf.identity(y)

            def infer():
                y, _, _ = tf1.nn.fused_batch_norm(x, gamma, beta, mean=mm, variance=mv, epsilon=1e-3,
                                                  is_training=False)
                return y
            return tf.cond(is_training, train, infer)

        def train_stats():
            mean, var = tf.nn.moments(x, list(range(len(x.shape) - 1)))
            updates = [tf1.assign(mm, mm * 0.9 + mean * 0.1), tf1.assign(mv, mv * 0.9 + var * 0.1)]
            with tf.control_dependencies(updates):
                return tf.identity(mean), tf.identity(var)

        def infer_stats():
            return tf.identity(mm), tf.identity(mv)

        mean, var = tf.cond(is_training, train_stats, infer_stats)
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3)


def training_graph(directory: str, resource: bool, cf_v1: bool = False, fused: bool = True) -> Model:
    """A small conv net saved mid-training: Adam slots, summaries, global step,
    UPDATE_OPS, dropout on keep_prob, batch norm behind is_training. The
    original's outputs are taken in inference mode (is_training=False, keep_prob=1)."""
    rng = np.random.RandomState(1)
    data = rng.randn(8, 6, 6, 2).astype(np.float32)
    labels = rng.randint(0, 3, size=8).astype(np.int64)
    holder = {}

    def build():
        x = tf1.placeholder(tf.float32, [None, 6, 6, 2], name="x")
        y_true = tf1.placeholder(tf.int64, [None], name="labels")
        is_training = tf1.placeholder(tf.bool, [], name="is_training")
        keep_prob = tf1.placeholder(tf.float32, [], name="keep_prob")
        kernel = tf1.get_variable("conv/kernel", initializer=tf.constant(rng.randn(3, 3, 2, 4).astype(np.float32) * 0.3),
                                  use_resource=resource)
        conv = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
        bn = _batch_norm(conv, is_training, "bn", resource, fused)
        seen = tf1.get_variable("bn/batches_seen", initializer=tf.constant(0.0), trainable=False, use_resource=resource)
        tf1.add_to_collection(tf1.GraphKeys.UPDATE_OPS, tf1.assign_add(seen, 1.0))
        h = tf.reduce_mean(tf.nn.relu(bn), axis=[1, 2])
        h = tf.nn.dropout(h, rate=1.0 - keep_prob)
        w = tf1.get_variable("dense/kernel", initializer=tf.constant(rng.randn(4, 3).astype(np.float32)),
                             use_resource=resource)
        b = tf1.get_variable("dense/bias", initializer=tf.zeros([3]), use_resource=resource)
        logits = tf.add(tf.matmul(h, w), b, name="logits")
        tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_true, logits=logits))
        tf1.summary.scalar("loss", loss)
        step = tf1.train.get_or_create_global_step()
        with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
            train = tf1.train.AdamOptimizer(0.01).minimize(loss, global_step=step)
        tf1.summary.merge_all()
        holder.update(train=train, x=x, y=y_true, t=is_training, k=keep_prob)

    def mutate(sess, i):
        for _ in range(5):
            sess.run(holder["train"], {holder["x"]: data, holder["y"]: labels, holder["t"]: True,
                                      holder["k"]: 0.7})

    feeds = {"x:0": data[:3], "is_training:0": False, "keep_prob:0": 1.0}
    with control_flow_v1(cf_v1):
        model = _save(directory, build, feeds, ["probs:0"], steps=[0, 10], mutate=mutate)
    model.feeds = {"x:0": data[:3]}  # the frozen graph binds the switches itself
    return model


def loop_and_cond(directory: str, resource: bool, cf_v1: bool) -> Model:
    """while_loop and cond (both data-dependent, not switches) reading variables inside."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = _variable("w", np.array([[0.5, -1.0], [2.0, 0.25]], np.float32), resource)
        w2 = _variable("w2", np.array([[1.5, 0.0], [-0.5, 1.0]], np.float32), resource)

        def body(i, acc):
            return i + 1, tf.tanh(tf.matmul(acc, w))

        _, looped = tf.while_loop(lambda i, acc: i < 3, body, [tf.constant(0), x])
        out = tf.cond(tf.reduce_sum(x) > 0, lambda: tf.matmul(looped, w2), lambda: looped - 1.0)
        tf.identity(out, name="out")
    feeds = {"x:0": np.array([[1.0, 2.0], [-0.5, 0.3]], np.float32)}
    with control_flow_v1(cf_v1):
        return _save(directory, build, feeds, ["out:0"])


def partitioned(directory: str, resource: bool) -> Model:
    """An embedding split with fixed_size_partitioner (slices in the checkpoint)."""
    def build():
        ids = tf1.placeholder(tf.int32, [None], name="ids")
        emb = tf1.get_variable("emb", initializer=tf.constant(np.arange(40, dtype=np.float32).reshape(10, 4)),
                               partitioner=tf1.fixed_size_partitioner(3), use_resource=resource)
        dense = tf1.get_variable("proj", initializer=tf.constant(np.arange(20, dtype=np.float32).reshape(4, 5) / 10),
                                 partitioner=tf1.fixed_size_partitioner(2), use_resource=resource)
        looked = tf.nn.embedding_lookup(emb, ids)
        tf.matmul(looked, tf.convert_to_tensor(dense), name="out")
    return _save(directory, build, {"ids:0": np.array([0, 3, 9, 4], np.int32)}, ["out:0"])


def sharded(directory: str, resource: bool) -> Model:
    """Saver(sharded=True) over variables placed on two devices: two data shards."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        with tf.device("/cpu:0"):
            a = _variable("a", np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), resource)
        with tf.device("/device:CPU:1"):
            b = _variable("b", np.array([0.5, -0.5], np.float32), resource)
        tf.add(tf.matmul(x, a), b, name="y")

    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        build()
        saver = tf1.train.Saver(sharded=True)
        config = tf1.ConfigProto(device_count={"CPU": 2}, allow_soft_placement=True)
        feeds = {"x:0": np.eye(2, dtype=np.float32)}
        with tf1.Session(graph=graph, config=config) as sess:
            sess.run(tf1.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(directory, "model.ckpt"))
            expected = sess.run("y:0", feeds)
    return Model(directory, feeds, {"y:0": expected}, prefix=os.path.basename(prefix))


def without_meta(directory: str, resource: bool, as_text: bool, rename: Optional[str] = None) -> Model:
    """A checkpoint saved with write_meta_graph=False plus the GraphDef written separately.
    ``rename``: the graph's dense variable is created under this other name."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = _variable("w", np.arange(6, dtype=np.float32).reshape(3, 2), resource)
        b = _variable("b", np.array([0.5, -0.5], np.float32), resource)
        tf.add(tf.matmul(x, w), b, name="y")
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            prefix = saver.save(sess, os.path.join(directory, "model.ckpt"), write_meta_graph=False)
            feeds = {"x:0": np.ones((2, 3), np.float32)}
            expected = sess.run("y:0", feeds)
    graph2 = tf.Graph()
    with graph2.as_default():  # the graph as the serving code builds it (no saver)
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = _variable(rename or "w", np.zeros((3, 2), np.float32), resource)
        b = _variable("b", np.zeros(2, np.float32), resource)
        tf.add(tf.matmul(x, w), b, name="y")
        name = "graph.pbtxt" if as_text else "graph.pb"
        tf.io.write_graph(graph2.as_graph_def(), os.path.dirname(directory), name, as_text=as_text)
    return Model(directory, feeds, {"y:0": expected}, prefix=os.path.basename(prefix),
                 extra={"graph": os.path.join(os.path.dirname(directory), name)})


def saved_model_v1(directory: str) -> Model:
    """A TF1 SavedModelBuilder export with a predict signature."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="features")
        w = _variable("w", np.arange(6, dtype=np.float32).reshape(3, 2) / 3, True)
        scores = tf.nn.softmax(tf.matmul(x, w), name="scores")
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            feeds = {"features:0": np.eye(3, dtype=np.float32)}
            expected = sess.run("scores:0", feeds)
            builder = tf1.saved_model.Builder(directory)
            sig = tf1.saved_model.signature_def_utils.predict_signature_def({"x": x}, {"probabilities": scores})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
    return Model(directory, feeds, {"scores:0": expected})


class _TwoLayer(tf.Module):
    def __init__(self):
        super().__init__()
        self.w1 = tf.Variable(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4), name="w1")
        self.w2 = tf.Variable(np.linspace(0.5, -0.5, 8, dtype=np.float32).reshape(4, 2), name="w2")
        self.scale = tf.Variable(np.float32(1.5), name="scale")

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.int32, name="steps")])
    def serve(self, x, steps):
        h = tf.nn.relu(tf.matmul(x, self.w1))
        i = tf.constant(0)
        while i < 2:  # autograph: a While op reading a variable inside
            h = h * self.scale
            i += 1
        return {"logits": tf.matmul(h, self.w2), "count": tf.shape(steps)[0] + 0}


def saved_model_v2(directory: str) -> Model:
    """tf.saved_model.save of a tf.Module with two inputs of different dtypes."""
    module = _TwoLayer()
    tf.saved_model.save(module, directory, signatures={"serving_default": module.serve})
    x = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]], np.float32)
    steps = np.array([1, 2, 3], np.int32)
    out = module.serve(tf.constant(x), tf.constant(steps))
    return Model(directory, {"x": x, "steps": steps},
                 {"logits": out["logits"].numpy(), "count": out["count"].numpy()})


def keras_export(directory: str) -> Model:
    """Keras 3 model.export (a TF2 SavedModel)."""
    import keras

    keras.utils.set_random_seed(3)
    inp = keras.Input((4,), name="features")
    h = keras.layers.Dense(5, activation="relu")(inp)
    h = keras.layers.Dropout(0.5)(h)
    out = keras.layers.Dense(2, activation="softmax")(h)
    model = keras.Model(inp, out)
    model.export(directory, verbose=False)
    x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    return Model(directory, {"features": x}, {"output_0": model(x, training=False).numpy()})


def tf2_checkpoint(directory: str) -> str:
    """A TF2 object-based checkpoint (tf.train.Checkpoint): values, no graph."""
    ckpt = tf.train.Checkpoint(w=tf.Variable(tf.ones([2, 2])), step=tf.Variable(3))
    return ckpt.save(os.path.join(directory, "ckpt"))


def ema_model(directory: str, resource: bool) -> Model:
    """Trained with ExponentialMovingAverage; the expected outputs use the
    shadow values, restored the seeds' way (variables_to_restore)."""
    rng = np.random.RandomState(2)
    data = rng.randn(16, 3).astype(np.float32)
    target = rng.randn(16, 2).astype(np.float32)
    holder = {}

    def build(with_training=True):
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = _variable("w", rng.randn(3, 2).astype(np.float32), resource)
        offset = tf1.get_variable("offset", initializer=tf.constant([0.25, -0.25]), trainable=False,
                                  use_resource=resource)
        y = tf.add(tf.matmul(x, w), offset, name="y")
        if with_training:
            step = tf1.train.get_or_create_global_step()
            loss = tf.reduce_mean(tf.square(y - target))
            opt = tf1.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
            ema = tf1.train.ExponentialMovingAverage(0.5, step)
            with tf.control_dependencies([opt]):
                holder["train"] = ema.apply(tf1.trainable_variables())
            holder["x"] = x
        return x, y

    def mutate(sess, i):
        for _ in range(4):
            sess.run(holder["train"], {holder["x"]: data})

    feeds = {"x:0": data[:4]}
    with control_flow_v1(not resource):  # EMA's initializer conds capture ref variables: v1 only
        model = _save(directory, build, feeds, ["y:0"], steps=[0, 4], mutate=mutate)
    graph = tf.Graph()
    with graph.as_default():
        build(with_training=False)
        restore = tf1.train.ExponentialMovingAverage(0.5).variables_to_restore()
        saver = tf1.train.Saver(restore)
        with tf1.Session(graph=graph) as sess:
            saver.restore(sess, os.path.join(directory, model.prefix))
            model.extra["ema_expected"] = sess.run("y:0", feeds)
    return model


def with_file_read(directory: str) -> Model:
    """A model whose inference path reads a file (ReadFile): refused (outside the positive op list)."""
    def build():
        x = tf1.placeholder(tf.float32, [None], name="x")
        w = _variable("w", np.float32(2.0), True)
        size = tf.cast(tf.strings.length(tf.io.read_file(tf.constant(os.path.abspath(__file__)))), tf.float32)
        tf.multiply(x * size, w, name="out")
    return _save(directory, build, {"x:0": np.ones(2, np.float32)}, ["out:0"])


def documented(tensors):
    """The manifest keys of each input/output that users' scripts rely on (newer keys left out)."""
    return [{k: t[k] for k in ("name", "dtype", "shape", "reason")} for t in tensors]


def dataset_fed(directory: str) -> Model:
    """A classifier trained from tf.data: an initializable iterator over placeholders
    (features, labels); data enters the model at IteratorGetNext."""
    rng = np.random.RandomState(4)
    w0 = rng.randn(3, 2).astype(np.float32)

    def build():
        features = tf1.placeholder(tf.float32, [None, 3], name="features_source")
        labels = tf1.placeholder(tf.int64, [None], name="labels_source")
        dataset = tf.data.Dataset.from_tensor_slices((features, labels)).batch(4)
        iterator = tf1.data.make_initializable_iterator(dataset)
        x, y = iterator.get_next()
        w = _variable("w", w0, True)
        logits = tf.matmul(x, w, name="logits")
        tf.nn.softmax(logits, name="probabilities")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

    x = np.arange(12, dtype=np.float32).reshape(4, 3) / 10.0
    model = _save(directory, build, {}, [])
    graph = tf.Graph()
    with graph.as_default():
        saver = tf1.train.import_meta_graph(os.path.join(directory, model.prefix + ".meta"))
        with tf1.Session(graph=graph) as sess:
            saver.restore(sess, os.path.join(directory, model.prefix))
            expected = sess.run("probabilities:0", {"IteratorGetNext:0": x})
    return Model(directory, {"IteratorGetNext:0": x}, {"probabilities:0": expected}, prefix=model.prefix)


def text_with_vocabulary(directory: str) -> Model:
    """A bag-of-words classifier over string tokens: a vocabulary table built from constant
    keys and values (tf.lookup.StaticHashTable, initialised by tables_initializer) maps
    tokens to ids (unknown tokens to 0), then an embedding, a mean and a dense layer."""
    vocab = ["<unk>", "the", "cat", "sat", "on", "mat", "dog", "ran"]
    rng = np.random.RandomState(5)
    emb0 = rng.randn(len(vocab), 4).astype(np.float32)
    w0 = rng.randn(4, 2).astype(np.float32)

    def build():
        tokens = tf1.placeholder(tf.string, [None, 3], name="tokens")
        labels = tf1.placeholder(tf.int64, [None], name="labels")
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(vocab[1:]), tf.constant(np.arange(1, len(vocab), dtype=np.int64))),
            default_value=0)
        ids = table.lookup(tokens)
        emb = _variable("embedding", emb0, True)
        w = _variable("w", w0, True)
        logits = tf.matmul(tf.reduce_mean(tf.nn.embedding_lookup(emb, ids), axis=1), w, name="logits")
        tf.nn.softmax(logits, name="probabilities")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        tf1.train.GradientDescentOptimizer(0.1).minimize(loss)

    feeds = {"tokens:0": np.array([[b"the", b"cat", b"sat"], [b"a", b"dog", b"ran"]], dtype=object)}
    return _save_with_tables(directory, build, feeds, ["probabilities:0"])


def _save_with_tables(directory: str, build: Callable, feeds, fetches: List[str]) -> Model:
    """Build, initialise variables and tables, save, and record ``fetches`` on ``feeds``."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        build()
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run([tf1.global_variables_initializer(), tf1.tables_initializer()])
            prefix = saver.save(sess, os.path.join(directory, "model.ckpt"))
            expected = sess.run(fetches, feeds) if fetches else []
    return Model(directory, feeds, dict(zip(fetches, expected)), prefix=os.path.basename(prefix))


def text_with_vocabulary_file(directory: str) -> Model:
    """The same classifier with its vocabulary table filled from a file (TextFileInitializer)."""
    os.makedirs(directory, exist_ok=True)
    vocab_path = os.path.join(directory, "vocab.txt")
    with open(vocab_path, "w") as fh:
        fh.write("the\ncat\nsat\n")

    def build():
        tokens = tf1.placeholder(tf.string, [None, 3], name="tokens")
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(vocab_path, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
                                          tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), default_value=-1)
        emb = _variable("embedding", np.ones((4, 2), np.float32), True)
        tf.reduce_mean(tf.nn.embedding_lookup(emb, table.lookup(tokens) + 1), axis=1, name="features")

    model = _save_with_tables(directory, build, {}, [])
    os.unlink(vocab_path)  # the server never sees the file
    return model


def assign_only(directory: str) -> Model:
    """A graph whose only computation ends in an assignment (``state = x @ w``): no loss,
    no sink that could be an output; the product is the one candidate."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = _variable("w", np.ones((3, 2), np.float32), False)
        state = tf1.get_variable("state", [2, 2], trainable=False, initializer=tf1.zeros_initializer())
        tf1.assign(state, tf.matmul(x, w, name="product")[:2], name="remember")

    return _save(directory, build, {}, [])


def alternating_heads(directory: str) -> Model:
    """Two heads on one trunk, each trained by its own optimizer (by turns): one network,
    since the optimizers share the trunk's variables."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 6], name="x")
        ya = tf1.placeholder(tf.int64, [None], name="ya")
        yb = tf1.placeholder(tf.float32, [None], name="yb")
        rng = np.random.RandomState(6)
        h = tf.nn.relu(tf.matmul(x, _variable("trunk", rng.randn(6, 8).astype(np.float32), True)))
        la = tf.matmul(h, _variable("head_a", rng.randn(8, 3).astype(np.float32), True), name="head_a_logits")
        lb = tf.squeeze(tf.matmul(h, _variable("head_b", rng.randn(8, 1).astype(np.float32), True)), 1, name="value")
        tf1.train.AdamOptimizer(name="opt_a").minimize(tf1.losses.sparse_softmax_cross_entropy(ya, la))
        tf1.train.AdamOptimizer(name="opt_b").minimize(tf1.losses.mean_squared_error(yb, lb))

    return _save(directory, build, {"x:0": np.ones((2, 6), np.float32)}, ["head_a_logits:0", "value:0"])


def two_signatures(directory: str) -> Model:
    """A TF1 SavedModel with two signatures over one graph: probabilities and an embedding."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="features")
        w = tf1.get_variable("w", initializer=np.arange(6, dtype=np.float32).reshape(3, 2) / 3)
        embedding = tf.nn.relu(tf.matmul(x, w), name="embedding")
        scores = tf.nn.softmax(embedding, name="scores")
        with tf1.Session(graph=graph) as sess:
            sess.run(tf1.global_variables_initializer())
            sig = tf1.saved_model.signature_def_utils.predict_signature_def
            builder = tf1.saved_model.Builder(directory)
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={
                "serving_default": sig({"x": x}, {"probabilities": scores}),
                "embed": sig({"x": x}, {"embedding": embedding})})
            builder.save()
    return Model(directory, {"features:0": np.eye(3, dtype=np.float32)}, {})


def lstm(directory: str, cf_v1: bool) -> Model:
    """A sequence classifier, an LSTM written out as a while loop over time with tensor arrays
    in and out (x[?, 6, 3] -> probabilities[?, 2]), built with TF1 control flow (Enter/Exit,
    TensorArrayV3) or TF2's (While, TensorListReserve with an element shape unknown in the
    batch), as dynamic_rnn builds either."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 6, 3], name="x")
        rng = np.random.RandomState(4)
        w = tf1.get_variable("lstm/kernel", initializer=(rng.randn(8, 20) * 0.4).astype(np.float32))
        b = tf1.get_variable("lstm/bias", initializer=np.zeros(20, np.float32))
        head = tf1.get_variable("head", initializer=np.linspace(-1, 1, 10, dtype=np.float32).reshape(5, 2))
        steps = tf1.TensorArray(tf.float32, size=6).unstack(tf.transpose(x, [1, 0, 2]))
        outs = tf1.TensorArray(tf.float32, size=6)
        zeros = tf.zeros(tf.stack([tf.shape(x)[0], 5]))

        def body(t, h, c, outs):
            z = tf.matmul(tf.concat([steps.read(t), h], 1), w) + b
            i, f, g, o = tf.split(z, 4, axis=1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            return t + 1, h, c, outs.write(t, h)

        _, h, _, outs = tf1.while_loop(lambda t, h, c, outs: t < 6, body, [tf.constant(0), zeros, zeros, outs])
        features = h + tf.reduce_mean(outs.stack(), axis=0)
        tf.nn.softmax(tf.matmul(features, head), name="probabilities")

    rng = np.random.RandomState(5)
    with control_flow_v1(cf_v1):
        return _save(directory, build, {"x:0": rng.randn(4, 6, 3).astype(np.float32)}, ["probabilities:0"])


def approx_top_k(directory: str) -> Model:
    """A scorer whose output goes through ApproxTopK (tf.math.approx_max_k, TF 2.9+), an op
    TensorFlow 2.3.1 (ML.NET's runtime) does not have."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 8], name="x")
        w = tf1.get_variable("w", initializer=np.linspace(-1, 1, 64, dtype=np.float32).reshape(8, 8))
        values, _ = tf.math.approx_max_k(tf.matmul(x, w), k=3)
        tf.identity(values, name="top")

    return _save(directory, build, {"x:0": np.ones((2, 8), np.float32)}, ["top:0"])
