"""Issue 33: with names given, tffreeze freezes what TensorFlow's own freeze_graph freezes.

Each case is a small model of a kind a trial on real models found refused: built with
TensorFlow in graph mode, trained a step, saved with ``tf.compat.v1.train.Saver``. It is
frozen side by side by TensorFlow (``convert_variables_to_constants`` on the restored
session, or ``freeze_graph`` on the files) and by tffreeze through the real server with
the outputs named; both frozen graphs run and give what the checkpoint gives in a session.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pytest

import models
from models import tf, tf1
from tffreeze import TffreezeError


def _train_save(directory, build, feeds, outputs, train_feeds=None, init_tables=False, save=None):
    """Build the graph (``build`` returns its train op), train two steps, save it, and return
    (the outputs restored from the checkpoint, TensorFlow's own frozen graph of them).
    ``save(saver, sess)``: how it is saved (default ``model.ckpt`` with its meta graph);
    returns the prefix to restore."""
    os.makedirs(directory, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        tf1.set_random_seed(0)
        train = build()
        saver = tf1.train.Saver()
        init = [tf1.global_variables_initializer()] + ([tf1.tables_initializer()] if init_tables else [])
        with tf1.Session(graph=graph) as sess:
            sess.run(init)
            for _ in range(2):
                sess.run(train, train_feeds if train_feeds is not None else feeds)
            prefix = save(saver, sess) if save else saver.save(sess, os.path.join(directory, "model.ckpt"))
        with tf1.Session(graph=graph) as sess:
            if init_tables:
                sess.run(tf1.tables_initializer())
            saver.restore(sess, prefix)
            expected = sess.run(outputs, feeds)
            keep = [o.split(":")[0] for o in outputs] + (["init_all_tables"] if init_tables else [])
            theirs = tf1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), keep)
    return expected, theirs


def _run(graph_def, feeds, outputs, init=None):
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf1.Session(graph=graph) as sess:
        if init:
            sess.run(init)
        return sess.run(outputs, feeds)


def _both_freeze(client, directory, feeds, outputs, expected, theirs, init=None, **options):
    """TensorFlow's frozen graph and tffreeze's (names given) both run and equal the checkpoint."""
    for got, want in zip(_run(theirs, feeds, outputs, init), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    outcome = client.freeze(directory, outputs=outputs, **options)
    ours = tf1.GraphDef.FromString(outcome.graph_bytes)
    for got, want in zip(_run(ours, feeds, outputs), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    return outcome


def _train_op(loss):
    return tf1.train.GradientDescentOptimizer(0.05).minimize(loss)


def test_capsule_routing_range_sized_by_shape_arithmetic(client, tmp_path):
    """Case 1: dynamic routing between capsule layers builds its route indices with a Range
    whose size is shape arithmetic on constants (in * out capsules): it was a crash
    ('int' object has no attribute 'reshape'), GRAPH_UNSUPPORTED, names given or not."""
    n_in, n_out, dim = 6, 3, 4
    rng = np.random.RandomState(1)

    def build():
        u = tf1.placeholder(tf.float32, [None, n_in, dim], name="u")
        w = tf1.get_variable("w", initializer=tf.constant(rng.randn(n_in, n_out, dim, dim).astype(np.float32) * 0.3))
        u_hat = tf.einsum("bid,iojd->bioj", u, w)
        routes = tf.constant(n_in) * n_out  # shape arithmetic: Mul of two scalar constants
        route_ids = tf.reshape(tf.range(routes), [n_in, n_out])
        prior = tf.cast(route_ids, tf.float32) * 0.0  # the routing logits start at zero, one per route
        b = tf.tile(prior[None], tf.stack([tf.shape(u)[0], 1, 1]))
        for _ in range(3):  # routing by agreement
            c = tf.nn.softmax(b, axis=2)
            s = tf.reduce_sum(c[..., None] * u_hat, axis=1)
            norm = tf.reduce_sum(tf.square(s), axis=-1, keepdims=True)
            v = norm / (1.0 + norm) * s / tf.sqrt(norm + 1e-9)
            b = b + tf.reduce_sum(u_hat * v[:, None], axis=-1)
        lengths = tf.identity(tf.norm(v, axis=-1), name="lengths")
        labels = tf1.placeholder_with_default(tf.zeros([tf.shape(u)[0]], tf.int32), [None], name="labels")
        return _train_op(tf.reduce_mean(tf.square(lengths - tf.one_hot(labels, n_out))))

    feeds = {"u:0": rng.randn(2, n_in, dim).astype(np.float32)}
    outputs = ["lengths:0"]
    expected, theirs = _train_save(str(tmp_path), build, feeds, outputs)
    _both_freeze(client, str(tmp_path), feeds, outputs, expected, theirs)
    (got,) = models.run_frozen(client.freeze(str(tmp_path)).graph_bytes, feeds, outputs)  # without names too
    np.testing.assert_allclose(got, expected[0], rtol=1e-5, atol=1e-5)


def test_signal_front_end_range_of_small_constants(client, tmp_path):
    """Case 2: an STFT front end on a waveform placeholder frames it with Ranges computed from
    small constants (frame count = (length - frame) // step + 1): a few KB, refused before as
    MEMORY_LIMIT because the import-time bound could not evaluate them."""
    rng = np.random.RandomState(2)

    def build():
        wave = tf1.placeholder(tf.float32, [None, 1024], name="wave")
        spec = tf.abs(tf.signal.stft(wave, frame_length=256, frame_step=128, fft_length=256))
        features = tf.math.log(tf.reduce_mean(spec, axis=1) + 1e-6)  # [batch, 129]
        w = tf1.get_variable("w", initializer=tf.constant(rng.randn(129, 4).astype(np.float32) * 0.1))
        logits = tf.matmul(features, w, name="logits")
        return _train_op(tf.reduce_mean(tf.square(logits)))

    feeds = {"wave:0": rng.randn(3, 1024).astype(np.float32)}
    outputs = ["logits:0"]
    expected, theirs = _train_save(str(tmp_path), build, feeds, outputs)
    _both_freeze(client, str(tmp_path), feeds, outputs, expected, theirs)


def test_mixture_of_experts_scatter_nd_is_inference(client, tmp_path):
    """Case 3: a gating network routes each example to an expert with tf.scatter_nd (a scatter
    into a new tensor): inference, not a training op (TRAINING_OP_NEEDED before). A scatter into
    a variable still is one."""
    rng = np.random.RandomState(3)
    n_experts, d = 3, 5

    def build():
        x = tf1.placeholder(tf.float32, [None, d], name="x")
        gate = tf1.get_variable("gate", initializer=tf.constant(rng.randn(d, n_experts).astype(np.float32)))
        experts = tf1.get_variable("experts", initializer=tf.constant(rng.randn(n_experts, d, 2).astype(np.float32)))
        choice = tf.argmax(tf.matmul(x, gate), axis=1, output_type=tf.int32)
        batch = tf.shape(x)[0]
        indices = tf.stack([tf.range(batch), choice], axis=1)
        dispatch = tf.scatter_nd(indices, tf.ones([batch]), tf.stack([batch, n_experts]))  # [batch, experts]
        mixed = tf.einsum("be,edo->bdo", dispatch * tf.nn.softmax(tf.matmul(x, gate)), experts)
        y = tf.identity(tf.einsum("bd,bdo->bo", x, mixed), name="y")
        routed = tf.tensor_scatter_nd_update(y, indices[:1, :1], tf.zeros([1, 2]))
        tf.identity(routed, name="routed")
        counts = tf1.get_variable("counts", [n_experts], tf.float32, tf1.zeros_initializer(), trainable=False,
                                 use_resource=False)
        count_op = tf1.scatter_add(counts, choice, tf.ones([batch]), name="count_experts")
        seen = tf1.get_variable("seen", [n_experts], tf.float32, tf1.zeros_initializer(), trainable=False)
        seen_op = tf1.scatter_add(seen, choice, tf.ones([batch]))  # a resource variable: ResourceScatterAdd
        with tf.control_dependencies([seen_op]):
            tf.identity(y, name="y_after_seen")
        return [_train_op(tf.reduce_mean(tf.square(y))), count_op, seen_op]

    feeds = {"x:0": rng.randn(4, d).astype(np.float32)}
    outputs = ["y:0", "routed:0"]
    expected, theirs = _train_save(str(tmp_path), build, feeds, outputs)
    outcome = _both_freeze(client, str(tmp_path), feeds, outputs, expected, theirs)
    assert "ScatterNd" in models.graph_ops(outcome.graph_bytes)
    with pytest.raises(TffreezeError) as err:  # the scatter into a variable is training
        client.freeze(str(tmp_path), outputs=["count_experts:0"])
    assert err.value.reason == "ERROR_REASON_TRAINING_OP_NEEDED", err.value
    assert "count_experts (ScatterAdd)" in str(err.value)
    with pytest.raises(TffreezeError) as err:
        client.freeze(str(tmp_path), outputs=["y_after_seen:0"])
    assert err.value.reason == "ERROR_REASON_TRAINING_OP_NEEDED" and "(ResourceScatterAdd)" in str(err.value), err.value


def test_lookup_table_values_from_range(client, tmp_path):
    """Case 4: a StaticHashTable whose values come from tf.range (not a Const): its contents
    follow from constants alone, so it is rewritten like a constant table."""
    vocab = ["the", "cat", "sat", "on", "mat"]
    rng = np.random.RandomState(4)

    def build():
        tokens = tf1.placeholder(tf.string, [None, 3], name="tokens")
        ids = tf.range(1, len(vocab) + 1, dtype=tf.int64)
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(tf.constant(vocab), ids), 0)
        emb = tf1.get_variable("embedding", initializer=tf.constant(rng.randn(len(vocab) + 1, 3).astype(np.float32)))
        pooled = tf.reduce_mean(tf.nn.embedding_lookup(emb, table.lookup(tokens)), axis=1, name="pooled")
        return _train_op(tf.reduce_mean(tf.square(pooled)))

    feeds = {"tokens:0": np.array([[b"the", b"cat", b"sat"], [b"a", b"dog", b"mat"]], dtype=object)}
    outputs = ["pooled:0"]
    expected, theirs = _train_save(str(tmp_path), build, feeds, outputs, init_tables=True)
    outcome = _both_freeze(client, str(tmp_path), feeds, outputs, expected, theirs, init="init_all_tables")
    assert any("lookup table" in w and "5 entries" in w for w in outcome.manifest["warnings"])
    assert not {"HashTableV2", "InitializeTableV2"} & set(models.graph_ops(outcome.graph_bytes))


def test_py_func_refusal_advice_works_when_followed(client, tmp_path):
    """Case 5: Python preprocessing (py_func) is refused, rightly; the refusal names the inputs
    that cut the graph below it, and following that advice literally freezes the model."""
    rng = np.random.RandomState(5)

    def build():
        raw = tf1.placeholder(tf.float32, [None, 4], name="raw")
        cleaned = tf1.py_func(lambda a: np.clip(a, -1, 1).astype(np.float32), [raw], tf.float32, name="clean")
        cleaned.set_shape([None, 4])
        w = tf1.get_variable("w", initializer=tf.constant(rng.randn(4, 2).astype(np.float32)))
        rows = tf.reshape(cleaned, [-1, 4], name="rows")
        scores = tf.nn.relu(tf.matmul(rows * 2.0, w), name="scores")
        return _train_op(tf.reduce_mean(tf.square(scores)))

    raw = rng.randn(3, 4).astype(np.float32) * 2
    expected, theirs = _train_save(str(tmp_path), build, {"raw:0": raw}, ["scores:0"])
    for got, want in zip(_run(theirs, {"raw:0": raw}, ["scores:0"]), expected):  # TensorFlow runs the py_func
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(TffreezeError) as err:
        client.freeze(str(tmp_path), outputs=["scores:0"])
    assert err.value.reason == "ERROR_REASON_UNSAFE_OP"
    advice = re.search(r"name these tensors as inputs: (\S+(?:, \S+)*?)[.;] ", str(err.value))
    assert advice, str(err.value)
    inputs = advice.group(1).split(", ")
    outcome = client.freeze(str(tmp_path), outputs=["scores:0"], inputs=inputs)
    assert [i["name"] for i in outcome.manifest["inputs"]] == inputs
    clipped = np.clip(raw, -1, 1)  # what the py_func made of the raw input, fed to the cut graph
    (got,) = models.run_frozen(outcome.graph_bytes, {inputs[0]: clipped}, ["scores:0"])
    np.testing.assert_allclose(got, expected[0], rtol=1e-5, atol=1e-5)
    assert "PyFunc" not in models.graph_ops(outcome.graph_bytes)

    # Below it too, where the graph records no dtypes and shapes: what the cut tensor is, is
    # inferred without importing the py_func.
    def no_shapes(meta):
        for node in meta.graph_def.node:
            node.attr.pop("_output_shapes", None)
    models.edit_meta(str(tmp_path), no_shapes)
    below = client.freeze(str(tmp_path), outputs=["scores:0"], inputs=["rows:0"])
    assert [(i["name"], i["dtype"], i["shape"]) for i in below.manifest["inputs"]] == [("rows:0", "float32", [-1, 4])]
    (got,) = models.run_frozen(below.graph_bytes, {"rows:0": clipped}, ["scores:0"])
    np.testing.assert_allclose(got, expected[0], rtol=1e-5, atol=1e-5)


def test_only_meta_graph_under_its_own_prefix(client, tmp_path):
    """Case 6: the meta graph was written once under the run's prefix (model-RUN.meta) and the
    step checkpoints without one (write_meta_graph=False): the folder's only meta graph is
    used, whatever its prefix, and the result says so."""
    from tensorflow.python.tools import freeze_graph

    rng = np.random.RandomState(6)
    directory = str(tmp_path / "run")

    def build():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("w", initializer=tf.constant(rng.randn(3, 2).astype(np.float32)))
        y = tf.identity(tf.matmul(x, w), name="y")
        return _train_op(tf.reduce_mean(tf.square(y - 1.0)))

    def save(saver, sess):
        saver.export_meta_graph(os.path.join(directory, "model-RUN.meta"))
        prefix = None
        for step in (100, 200):
            prefix = saver.save(sess, os.path.join(directory, "model-RUN.ckpt"), global_step=step,
                                write_meta_graph=False)
        return prefix

    feeds = {"x:0": rng.randn(2, 3).astype(np.float32)}
    expected, _ = _train_save(directory, build, feeds, ["y:0"], save=save)
    assert sorted(f for f in os.listdir(directory) if f.endswith(".meta")) == ["model-RUN.meta"]
    theirs_path = str(tmp_path / "theirs.pb")  # TensorFlow's freeze_graph, on the files
    freeze_graph.freeze_graph(input_graph=None, input_saver=None, input_binary=True,
                              input_checkpoint=os.path.join(directory, "model-RUN.ckpt-200"), output_node_names="y",
                              restore_op_name=None, filename_tensor_name=None, output_graph=theirs_path,
                              clear_devices=True, initializer_nodes="",
                              input_meta_graph=os.path.join(directory, "model-RUN.meta"))
    with open(theirs_path, "rb") as fh:
        theirs = tf1.GraphDef.FromString(fh.read())
    outcome = _both_freeze(client, directory, feeds, ["y:0"], expected, theirs)
    m = outcome.manifest
    assert m["checkpoint"]["prefix"] == "model-RUN.ckpt-200" and m["checkpoint"]["meta_graph"] == "model-RUN.meta"
    assert any("model-RUN.meta" in w and "only meta graph" in w for w in m["warnings"]), m["warnings"]


def test_the_only_meta_graph_is_chosen_from_file_names_alone():
    """Case 6 in the layout rules (what PlanFreeze uploads and a freeze selects): the folder's
    only meta graph goes with the checkpoint; of two under other prefixes, none is guessed."""
    from tffreeze_server.core import layout

    files = ["checkpoint", "model-RUN.meta"] + ["model-RUN.ckpt-%d.%s" % (step, part) for step in (100, 200)
                                                for part in ("index", "data-00000-of-00001")]
    sel = layout.select(files)
    assert sel.checkpoint.prefix == "model-RUN.ckpt-200" and sel.checkpoint.meta == "model-RUN.meta"
    assert any("only meta graph" in w and "model-RUN.meta" in w for w in sel.warnings)
    assert "model-RUN.meta" in [name for name, _ in layout.plan(files, {}).files]
    assert layout.select(files + ["other-RUN.meta"]).checkpoint.meta is None


def test_constant_values_are_what_tensorflow_computes():
    """Cases 1, 2 and 4 rest on constant sub-graphs evaluated before import (core/constvalues.py):
    each value is TensorFlow's own, dtype and float rounding included; what is too large or not
    evaluated is None (the caller's named refusal), never an exception."""
    from tffreeze_server.core import bounds
    from tffreeze_server.core.constvalues import Evaluator
    from tffreeze_server.core.errors import ResourceExhausted

    graph = tf.Graph()
    with graph.as_default():
        exact = [tf.range(0.1, 7.3, 0.7), tf.range(np.float32(1), np.float32(2), np.float32(0.1)),
                 tf.range(tf.constant(3) * 4, 1, -3), tf.reduce_mean(tf.range(7)), tf.cast(tf.range(5), tf.float32) / 3.0,
                 tf.unstack(tf.reshape(tf.range(12), [3, 4]))[2],
                 tf.strided_slice(tf.reshape(tf.range(24), [2, 3, 4]), [0, 1, 1], [2, 3, 4], [1, 1, 2]),
                 tf.gather(tf.range(10) * 2, [3, 1, 4]), tf.concat([tf.fill([2], 3), tf.shape(tf.zeros([4, 5]))], 0),
                 tf.math.floordiv(tf.constant(-7), 2), tf.math.floormod(tf.constant(-7), 3),
                 tf.truncatediv(tf.constant(-7), 2), tf.tile(tf.constant([[1, 2]]), [2, 2]),
                 tf.range(tf.size(tf.range(20)) * 2), tf.constant(6) * 3]
        huge = tf.range(tf.reduce_prod(tf.constant([1000, 1000, 1000], tf.int64)))
        fed = tf.range(tf1.placeholder(tf.int32, [], name="n"))
    with tf1.Session(graph=graph) as sess:
        want = sess.run(exact)
    values = Evaluator(graph.as_graph_def().node, max_elements=1 << 16)
    for tensor, value in zip(exact, want):
        got = values.value(tensor.name)
        assert got is not None and got.dtype == value.dtype, tensor.name
        np.testing.assert_array_equal(got, value, err_msg=tensor.name)
    assert values.value(huge.name) is None and values.value(fed.name) is None

    @tf.function
    def body(x):  # in a function body an input is node:output_arg:index
        return x + tf.cast(tf.range(tf.unstack(tf.constant([4, 5, 6]))[2]), tf.float32)[:1]
    fdef = body.get_concrete_function(tf.TensorSpec([1], tf.float32)).function_def
    in_body = Evaluator(fdef.node_def)
    limit = next(n for n in fdef.node_def if n.op == "Range").input[1]
    assert limit.endswith(":output:2") and in_body.value(limit) == 6
    with pytest.raises(ResourceExhausted) as err:  # the bound names it, before anything is built
        bounds.check_import_constants(graph.as_graph_def(), 256 << 20)
    assert err.value.reason == "ERROR_REASON_MEMORY_LIMIT" and "1000000000 elements" in str(err.value)


def test_table_refusal_advice_works_when_followed(client, tmp_path):
    """The same rule for the refusal of a table filled from a file (rightly refused: the server
    never reads a file a graph names): the inputs it names cut the graph after the lookup, and
    following them literally freezes the rest."""
    model = models.text_with_vocabulary_file(str(tmp_path / "text"))
    with pytest.raises(TffreezeError) as err:
        client.freeze(model.directory, outputs=["features:0"])
    assert err.value.reason == "ERROR_REASON_GRAPH_DOES_NOT_RUN"
    advice = re.search(r"name these tensors as inputs: (\S+(?:, \S+)*?)[.;] ", str(err.value))
    assert advice, str(err.value)
    inputs = advice.group(1).split(", ")
    outcome = client.freeze(model.directory, outputs=["features:0"], inputs=inputs)
    assert [i["name"] for i in outcome.manifest["inputs"]] == inputs
    ids = np.array([[0, 2, 1], [1, -1, -1]], np.int64)  # what the lookup gave (-1: not in the file)
    (got,) = models.run_frozen(outcome.graph_bytes, {inputs[0]: ids}, ["features:0"])
    np.testing.assert_allclose(got, np.ones((2, 2), np.float32))


def test_unbounded_constant_size_advice_works_when_followed(client, tmp_path):
    """A size computed from constants through an op the server does not evaluate before import
    (log1p here) is the named MEMORY_LIMIT refusal, never GRAPH_UNSUPPORTED; the input it names
    cuts the graph there, and following it literally freezes the model."""
    rng = np.random.RandomState(7)

    def build():
        x = tf1.placeholder(tf.float32, [None, 5], name="x")
        width = tf.cast(tf.math.round(tf.math.log1p(tf.constant(19.0)) * 2.0), tf.int32)  # round(2 ln 20) = 6
        positions = tf.cast(tf.range(width), tf.float32)
        w = tf1.get_variable("w", initializer=tf.constant(rng.randn(5, 1).astype(np.float32)))
        y = tf.identity(tf.matmul(x, w) * positions, name="y")
        return _train_op(tf.reduce_mean(tf.square(y)))

    feeds = {"x:0": rng.randn(2, 5).astype(np.float32)}
    expected, theirs = _train_save(str(tmp_path), build, feeds, ["y:0"])
    for got, want in zip(_run(theirs, feeds, ["y:0"]), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(TffreezeError) as err:
        client.freeze(str(tmp_path), outputs=["y:0"])
    assert err.value.reason == "ERROR_REASON_MEMORY_LIMIT"
    advice = re.search(r"name (\S+) as an input", str(err.value))
    assert advice, str(err.value)
    outcome = client.freeze(str(tmp_path), outputs=["y:0"], inputs=[advice.group(1)])
    assert advice.group(1) in [i["name"] for i in outcome.manifest["inputs"]]
    (got,) = models.run_frozen(outcome.graph_bytes, {**feeds, advice.group(1): np.int32(6)}, ["y:0"])
    np.testing.assert_allclose(got, expected[0], rtol=1e-5, atol=1e-5)
