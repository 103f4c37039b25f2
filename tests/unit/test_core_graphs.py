"""The engine's pure GraphDef modules in isolation (no server, no worker): resolve,
switches, saver_map, spec, optimize and the tensorflowsharp target, on graphs built here."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tffreeze_api import options  # noqa: E402
from tffreeze_api.v1 import freeze_pb2  # noqa: E402
from tffreeze_server.core import optimize, resolve, rewrite, saver_map, switches, tensorflowsharp  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition, InvalidArgument  # noqa: E402
from tffreeze_server.core.spec import FreezeSpec  # noqa: E402

tf1 = tf.compat.v1


def _meta(build, saver=False, **saver_kw):
    g = tf.Graph()
    with g.as_default():
        build()
        if saver:
            tf1.train.Saver(**saver_kw)
        return tf1.train.export_meta_graph(graph=g)


def _classifier():
    x = tf1.placeholder(tf.float32, [None, 3], name="x")
    labels = tf1.placeholder(tf.int32, [None], name="labels")
    w = tf1.get_variable("w", initializer=tf.ones([3, 2]))
    logits = tf.matmul(x, w, name="logits")
    tf.nn.softmax(logits, name="probs")
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), name="loss")
    tf1.train.GradientDescentOptimizer(0.1).minimize(loss, name="train_op")
    tf1.summary.scalar("loss", loss)


# -- resolve ---------------------------------------------------------------------------
def test_resolution_skips_training_and_summary_sinks():
    res = resolve.resolve(_meta(_classifier), [], [], None)
    outputs = [t for t, _ in res.outputs]
    assert "probs:0" in outputs
    assert not any(t.startswith(("train_op", "gradients", "loss")) for t in outputs)


def test_shape_arithmetic_and_handle_tensors_are_never_outputs():
    """Sinks that are not data: an int computed from a Shape (a batch size), a TensorList
    (variant), a resource handle. Only the model's tensor is an output."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("w", initializer=tf.ones([3, 2]), use_resource=True)
        tf.tanh(tf.matmul(x, w), name="y")
        tf.multiply(tf.shape(x)[0], 2, name="batch_times_two")
        tf.raw_ops.EmptyTensorList(element_shape=tf.constant([2], tf.int32), max_num_elements=-1,
                                   element_dtype=tf.float32, name="unused_list")
        tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[], shared_name="h", name="handle")
    res = resolve.resolve(_meta(build), [], [], None)
    assert [t for t, _ in res.outputs] == ["y:0"], res.outputs


def test_top_k_gives_values_and_indices():
    def build():
        x = tf1.placeholder(tf.float32, [None, 5], name="x")
        w = tf1.get_variable("w", initializer=tf.ones([5, 5]))
        tf.math.top_k(tf.matmul(x, w), k=2, name="best")
    res = resolve.resolve(_meta(build), [], [], None)
    assert [t for t, _ in res.outputs] == ["best:0", "best:1"], res.outputs
    assert "indices" in res.outputs[1][1]


def test_resolution_returns_the_head_of_the_loss_input_with_evidence():
    res = resolve.resolve(_meta(_classifier), [], [], None)
    assert res.outputs == [("probs:0", "prediction head (Softmax) computed from logits:0")]
    assert "logits:0 left out: the graph computes its head (probs:0) from it; name it in options.outputs to keep it" \
        in res.warnings


def test_end_point_collections_are_not_outputs_but_output_collections_are():
    def build(key):
        def inner():
            _classifier()
            for name in ("logits", "probs", "x"):
                tf1.add_to_collection(key, tf1.get_default_graph().get_tensor_by_name(name + ":0"))
        return inner
    res = resolve.resolve(_meta(build("net/_end_points")), [], [], None)
    assert [t for t, _ in res.outputs] == ["probs:0"] and "collection" not in res.outputs[0][1]
    res = resolve.resolve(_meta(build("pred_network")), [], [], None)
    assert res.outputs[0] == ("logits:0", "collection 'pred_network'")


def test_many_candidates_and_no_loss_is_refused_with_the_best_ten():
    def build():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        w = tf1.get_variable("w", initializer=tf.ones([2, 2]))
        for i in range(12):
            tf.matmul(x, w * float(i), name="head_%d" % i)
        tf.nn.softmax(x, name="probs")
    with pytest.raises(FailedPrecondition) as err:
        resolve.resolve(_meta(build), [], [], None)
    e = err.value
    assert e.reason == "ERROR_REASON_OUTPUTS_AMBIGUOUS" and e.metadata["field"] == "options.outputs"
    listed = e.metadata["candidates"].split(",")
    assert len(listed) == 10 and listed[0] == "probs:0"  # head ops first
    assert "13 tensors qualify" in e.message and "probs:0 (float32, " in e.message and "outputs=" in e.message
    listing = resolve.resolve(_meta(build), [], [], None, refuse_ambiguous=False)  # what inspect shows
    assert [t for t, _ in listing.outputs] == listed and "13 tensors qualify" in listing.warnings[0]


def test_explicit_names_win_and_misses_name_the_field():
    meta = _meta(_classifier)
    res = resolve.resolve(meta, ["logits"], ["x:0"], None)
    assert res.outputs == [("logits:0", resolve.EXPLICIT_OUTPUT)] and res.inputs == [("x:0", resolve.EXPLICIT_INPUT)]
    with pytest.raises(InvalidArgument) as err:
        resolve.resolve(meta, ["logitz"], [], None)
    assert err.value.reason == "ERROR_REASON_NAME_NOT_IN_GRAPH" and err.value.metadata["field"] == "options.outputs"
    assert "logits" in err.value.metadata["suggestions"]


def test_signature_def_outranks_analysis():
    def build():
        x = tf1.placeholder(tf.float32, [None, 2], name="inp")
        tf.identity(x * 2.0, name="doubled")
        tf.identity(x * 3.0, name="tripled")
    meta = _meta(build)
    sig = meta.signature_def["serving_default"]
    sig.inputs["a"].name = "inp:0"
    sig.outputs["b"].name = "tripled:0"
    res = resolve.resolve(meta, [], [], "serving_default")
    assert [t for t, _ in res.outputs] == ["tripled:0"] and "signature_def" in res.outputs[0][1]


# -- switches ----------------------------------------------------------------------------
def _switch_graph():
    x = tf1.placeholder(tf.float32, [None, 2], name="x")
    is_training = tf1.placeholder(tf.bool, [], name="is_training")
    keep = tf1.placeholder_with_default(0.5, [], name="keep_prob")
    y = tf.cond(is_training, lambda: x * keep, lambda: x, name="drop")
    tf.identity(y, name="out")


def test_training_switches_are_bound_and_options_override():
    graph_def = _meta(_switch_graph).graph_def
    found = {s.name: s.inference_value for s in switches.find_switches(graph_def)}
    assert found == {"is_training": False, "keep_prob": 1.0}
    g = type(graph_def)()
    g.CopyFrom(graph_def)
    made = switches.bind(g, {"keep_prob": None, "is_training": True})
    assert made == [{"name": "is_training:0", "value": True, "reason": switches.BOUND_BY_OPTION}]
    assert {n.name: n.op for n in g.node}["keep_prob"] == "PlaceholderWithDefault"


def test_binding_a_missing_switch_names_the_ones_that_exist():
    graph_def = _meta(_switch_graph).graph_def
    with pytest.raises(InvalidArgument) as err:
        switches.bind(graph_def, {"phase": False})
    assert "is_training" in err.value.message and err.value.metadata["field"] == "options.bind"
    with pytest.raises(InvalidArgument) as err:
        switches.bind(graph_def, {"is_training": 0.5})  # not a bool
    assert err.value.reason == "ERROR_REASON_INVALID_OPTION"


def test_batch_norm_in_training_mode_is_found_until_its_switch_is_bound():
    def build():
        x = tf1.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        training = tf1.placeholder(tf.bool, [], name="is_training")
        scale, offset = tf.ones([3]), tf.zeros([3])

        def batch_stats():
            return tf1.nn.fused_batch_norm(x, scale, offset, is_training=True)[0]

        def moving_stats():
            return tf1.nn.fused_batch_norm(x, scale, offset, mean=tf.zeros([3]), variance=tf.ones([3]),
                                           is_training=False)[0]
        tf.identity(tf.cond(training, batch_stats, moving_stats), name="out")
    pruned = rewrite.prune(_meta(build).graph_def, ["out"])
    assert switches.training_batch_norms(pruned)
    assert switches.bind(pruned, {})[0]["name"] == "is_training:0"
    switches.fold_conditionals(pruned)
    assert not switches.training_batch_norms(rewrite.tidy(rewrite.prune(pruned, ["out"])))  # as the engine does


@pytest.mark.parametrize("name,how,value", [
    ("dropout", "keep_prob", 1.0),  # (a name that says "rate" on a keep probability: the graph decides)
    ("dropout_rate", "keep_prob", 1.0),
    ("keep_prob", "rate", 0.0),
    ("dropout", "rate", 0.0),
    ("keep_rate", "tf1_floor", 1.0),  # TensorFlow 1's floor(keep_prob + uniform), written by hand
    ("keep_prob", None, 1.0),  # read by no dropout: the name decides, as before
])
def test_a_dropout_switch_s_inference_value_is_what_the_graph_does_with_it(name, how, value):
    def build():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        p = tf1.placeholder(tf.float32, [], name=name)
        if how == "keep_prob":
            out = tf1.nn.dropout(x, p)
        elif how == "rate":
            out = tf.nn.dropout(x, rate=p)
        elif how == "tf1_floor":
            out = x / p * tf.floor(p + tf.random.uniform(tf.shape(x)))
        else:
            out = x * p
        tf.identity(out, name="out")
    found = {s.name: s.inference_value for s in switches.find_switches(_meta(build).graph_def)}
    assert found[name] == value, found


def test_a_bound_switch_kills_a_branch_s_constants_tied_to_it_by_control_edges_only():
    """``tf.cond(training, lambda: 0.2, lambda: 0.0)`` as a dropout rate, TensorFlow 1's cond: each
    branch's constant hangs on the branch's pivot by a control edge alone. Bound to False, the
    training constant must die with its branch; kept alive (its edge dropped), the Merge had two
    live inputs and the frozen graph dropped out at the training rate."""
    def build():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        training = tf1.placeholder(tf.bool, [], name="training")
        rate = tf1.cond(training, lambda: tf.constant(0.2), lambda: tf.constant(0.0))
        tf.identity(rate * x + x, name="out")
    was = tf1.control_flow_v2_enabled()
    tf1.disable_control_flow_v2()
    try:
        graph_def = rewrite.prune(_meta(build).graph_def, ["out"])
    finally:
        if was:
            tf1.enable_control_flow_v2()
    assert any(n.op == "Switch" for n in graph_def.node)  # (the case: v1 control flow)
    switches.bind(graph_def, {"training": False})
    switches.fold_conditionals(graph_def)
    graph_def = rewrite.prune(graph_def, ["out"])
    assert not any(n.op in ("Switch", "Merge") for n in graph_def.node), [n.op for n in graph_def.node]
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf1.Session(graph=g) as sess:
            got = sess.run("out:0", {"x:0": np.ones((2, 4), np.float32)})
    np.testing.assert_allclose(got, np.ones((2, 4)))  # rate 0: x itself


# -- saver_map ---------------------------------------------------------------------------
@pytest.mark.parametrize("resource", [False, True])
def test_renamed_saver_keys_are_read_from_restore_ops(resource):
    def build():
        a = tf1.get_variable("a", initializer=tf.ones([2]), use_resource=resource)
        b = tf1.get_variable("b", initializer=tf.zeros([2]), use_resource=resource)
        tf.add(a, b, name="sum")
        tf1.train.Saver({"renamed_a": a, "b": b})
    mapping = saver_map.variable_keys(_meta(build).graph_def)
    assert mapping["a"].key == "renamed_a" and mapping["b"].key == "b"


# -- spec ----------------------------------------------------------------------------------
def test_spec_validates_every_option_before_any_file():
    spec = FreezeSpec.from_options(options.freeze_options(outputs="probs", bind={"is_training": False},
                                                          var_map={"w:0": "k"}, tags=["serve"]))
    assert spec.outputs == ("probs",) and spec.bind == {"is_training": False} and spec.var_map == {"w": "k"}
    for bad, field in ((freeze_pb2.FreezeOptions(outputs=["a:b:c"]), "options.outputs"),
                       (freeze_pb2.FreezeOptions(graph_path="../etc/passwd"), "options.graph_path"),
                       (freeze_pb2.FreezeOptions(target=99), "options.target"),
                       (freeze_pb2.FreezeOptions(step=-3), "options.step")):
        with pytest.raises(InvalidArgument) as err:
            FreezeSpec.from_options(bad)
        assert err.value.metadata["field"] == field and err.value.reason == "ERROR_REASON_INVALID_OPTION"
    bad = freeze_pb2.FreezeOptions()
    bad.bind["x"].string_value = "yes"
    with pytest.raises(InvalidArgument):
        FreezeSpec.from_options(bad)


# -- optimize and the tensorflowsharp target ------------------------------------------------
def _frozen_dense():
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf.constant(np.arange(6, dtype=np.float32).reshape(3, 2), name="w")
        y = tf.identity(tf.matmul(x, w) + tf.constant([0.5, -0.5]), name="mid")
        tf.nn.relu(tf.identity(y), name="y")
    return g.as_graph_def()


def _run(graph_def, feed):
    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
        with tf1.Session(graph=g) as s:
            return s.run("y:0", {"x:0": feed})


def test_optimize_drops_identities_and_keeps_outputs():
    graph_def = _frozen_dense()
    opt, done = optimize.optimize(graph_def, ["x"], ["y"])
    assert len(opt.node) < len(graph_def.node) and "Identity" not in {n.op for n in opt.node}
    feed = np.random.RandomState(0).randn(4, 3).astype(np.float32)
    np.testing.assert_allclose(_run(opt, feed), _run(graph_def, feed), rtol=1e-6)
    assert done and "nodes" in done[0]


def test_tensorflowsharp_target_strips_new_defaults_and_refuses_unknown_ops():
    graph_def = _frozen_dense()
    assert any("grad_a" in n.attr for n in graph_def.node if n.op == "MatMul")
    tensorflowsharp.make_loadable(graph_def)
    assert not any("grad_a" in n.attr for n in graph_def.node if n.op == "MatMul")
    graph_def.node.add(name="e", op="Erfinv", input=["x"]).attr["T"].type = tf.float32.as_datatype_enum
    with pytest.raises(FailedPrecondition) as err:
        tensorflowsharp.make_loadable(graph_def)
    assert err.value.reason == "ERROR_REASON_TARGET_INCOMPATIBLE" and "Erfinv" in err.value.message


def test_dtype_names_never_crash_on_types_numpy_lacks():
    from tffreeze_server.core.engine import dtype_name

    assert [dtype_name(d) for d in (tf.float32, tf.string, tf.bool, tf.variant, tf.resource, tf.qint8)] == [
        "float32", "string", "bool", "variant", "resource", "qint8"]
