"""Every checkpoint kind users bring, frozen through the real server with
names resolved automatically, checked against the original model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import models
from tffreeze_api import manifest
from tffreeze_api.v1 import freeze_pb2
from tffreeze import FailedPreconditionError, FreezeClient, InvalidArgumentError, NotFoundError

KINDS = [pytest.param(False, id="ref"), pytest.param(True, id="resource")]
FORBIDDEN = {"Assign", "AssignVariableOp", "AssignAdd", "AssignSub", "RefSwitch", "VariableV2", "VarHandleOp",
             "RestoreV2", "SaveV2", "ApplyAdam", "ResourceApplyAdam"}


def _all_nodes(graph_bytes):
    gd = models.tf1.GraphDef()
    gd.ParseFromString(graph_bytes)
    nodes = list(gd.node)
    for f in gd.library.function:
        nodes.extend(f.node_def)
    return nodes


def _check(outcome, model, rtol=1e-5, atol=1e-5, feeds=None, expected=None):
    expected = expected or model.expected
    fetches = list(expected)
    got = models.run_frozen(outcome.graph_bytes, feeds or model.feeds, fetches)
    for name, value in zip(fetches, got):
        np.testing.assert_allclose(value, expected[name], rtol=rtol, atol=atol)
    nodes = _all_nodes(outcome.graph_bytes)
    assert not FORBIDDEN & {n.op for n in nodes}
    assert not [n.name for n in nodes if n.op.startswith("FusedBatchNorm") and n.attr["is_training"].b]


# -- training graphs -----------------------------------------------------------
# Ref variables cannot be captured by control-flow-v2 functions: TF1 users had them with control flow v1.
VARIABLE_AND_CONTROL_FLOW = [pytest.param(True, False, id="resource-cf2"), pytest.param(True, True, id="resource-cf1"),
                             pytest.param(False, True, id="ref-cf1")]


@pytest.mark.parametrize("resource,cf_v1", VARIABLE_AND_CONTROL_FLOW)
@pytest.mark.parametrize("fused", [pytest.param(True, id="fused"), pytest.param(False, id="moments")])
def test_training_graph_binds_switches_and_drops_training(client, tmp_path, resource, cf_v1, fused):
    model = models.training_graph(str(tmp_path), resource, cf_v1=cf_v1, fused=fused)
    outcome = client.freeze(model.directory)
    _check(outcome, model)
    m = outcome.manifest
    # The loss reads logits; probs, the softmax head computed from them, stands for them.
    assert [o["name"] for o in m["outputs"]] == ["probs:0"]
    assert m["outputs"][0]["reason"] == "prediction head (Softmax) computed from logits:0"
    assert any(w.startswith("logits:0 left out: the graph computes its head (probs:0)") for w in m["warnings"])
    assert models.documented(m["inputs"]) == [{"name": "x:0", "dtype": "float32", "shape": [-1, 6, 6, 2],
                            "reason": "placeholder the outputs depend on"}]
    assert m["outputs"][0]["dtype"] == "float32" and m["outputs"][0]["shape"] == [-1, 3]
    bound = {b["name"]: b["value"] for b in m["bindings"]}
    assert bound == {"is_training:0": False, "keep_prob:0": 1.0}
    assert all(b["reason"] == "inference value of a training switch" for b in m["bindings"])
    assert m["checkpoint"]["step"] == 10 and m["source_kind"] == "SOURCE_KIND_SAVER"


@pytest.mark.parametrize("resource,cf_v1", VARIABLE_AND_CONTROL_FLOW)
def test_training_switch_bound_to_true_is_refused(client, tmp_path, resource, cf_v1):
    model = models.training_graph(str(tmp_path), resource, cf_v1=cf_v1)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory, bind={"is_training": True})
    assert "training" in err.value.message
    assert any(op in err.value.message for op in ("Assign", "batch norm in training mode"))


def test_switch_left_unbound_becomes_an_input(client, tmp_path):
    model = models.training_graph(str(tmp_path), True)
    outcome = client.freeze(model.directory, bind=["keep_prob="])
    names = [i["name"] for i in outcome.manifest["inputs"]]
    assert names == ["x:0", "keep_prob:0"]
    (got,) = models.run_frozen(outcome.graph_bytes, {"x:0": model.feeds["x:0"], "keep_prob:0": 1.0}, ["probs:0"])
    np.testing.assert_allclose(got, model.expected["probs:0"], rtol=1e-5, atol=1e-5)
    info = manifest.to_dict(client.inspect(model.directory))
    assert {s["name"]: s["inference_value"] for s in info["switches"]} == {"is_training:0": False,
                                                                          "keep_prob:0": 1.0}


# -- control flow -----------------------------------------------------------------
@pytest.mark.parametrize("resource", KINDS)
@pytest.mark.parametrize("cf_v1", [pytest.param(False, id="cf2"), pytest.param(True, id="cf1")])
def test_while_loop_and_cond_reading_variables(client, tmp_path, resource, cf_v1):
    model = models.loop_and_cond(str(tmp_path), resource, cf_v1)
    outcome = client.freeze(model.directory)
    _check(outcome, model)
    # Both branches of the data-dependent cond survive: x with a negative sum takes the other one.
    neg = {"x:0": -np.abs(model.feeds["x:0"])}
    (frozen_neg,) = models.run_frozen(outcome.graph_bytes, neg, ["out:0"])
    assert frozen_neg.shape == (2, 2) and np.all(frozen_neg < 0)
    m = outcome.manifest
    assert models.documented(m["inputs"]) == [{"name": "x:0", "dtype": "float32", "shape": [-1, 2],
                            "reason": "placeholder the outputs depend on"}]
    assert [(o["name"], o["dtype"]) for o in m["outputs"]] == [("out:0", "float32")]
    assert m["outputs"][0]["reason"].startswith("graph sink")
    assert client.freeze(model.directory).graph_bytes == outcome.graph_bytes


# -- partitions -------------------------------------------------------------------
@pytest.mark.parametrize("resource", KINDS)
def test_partitioned_variables(client, tmp_path, resource):
    model = models.partitioned(str(tmp_path), resource)
    outcome = client.freeze(model.directory)
    _check(outcome, model)
    m = outcome.manifest
    assert models.documented(m["inputs"]) == [{"name": "ids:0", "dtype": "int32", "shape": [-1],
                            "reason": "placeholder the outputs depend on"}]
    assert m["variables_frozen"] == 5  # 3 + 2 partitions
    keys = {v.checkpoint_key for v in client.inspect(model.directory).variables}
    assert {"emb", "proj"} <= keys  # one full tensor per partitioned variable, sliced on freezing


@pytest.mark.parametrize("resource", KINDS)
def test_sharded_save_over_two_devices(client, tmp_path, resource):
    model = models.sharded(str(tmp_path), resource)
    assert len([f for f in os.listdir(model.directory) if ".data-" in f]) == 2
    outcome = client.freeze(model.directory)
    _check(outcome, model)
    m = outcome.manifest
    assert [(t["name"], t["dtype"], t["shape"]) for t in m["inputs"]] == [("x:0", "float32", [-1, 2])]
    assert [(t["name"], t["dtype"], t["shape"]) for t in m["outputs"]] == [("y:0", "float32", [-1, 2])]
    assert m["variables_frozen"] == 2


# -- graphs without .meta ------------------------------------------------------------
@pytest.mark.parametrize("resource", KINDS)
@pytest.mark.parametrize("as_text", [pytest.param(False, id="binary"), pytest.param(True, id="text")])
def test_checkpoint_without_meta_plus_graph_file(client, tmp_path, resource, as_text):
    model = models.without_meta(str(tmp_path / "ckpt"), resource, as_text)
    assert not [f for f in os.listdir(model.directory) if f.endswith(".meta")]
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory)
    assert "graph_path" in err.value.message and err.value.reason == "ERROR_REASON_NO_GRAPH"
    outcome = client.freeze(model.directory, graph_file=model.extra["graph"])
    _check(outcome, model)
    m = outcome.manifest
    assert m["source_kind"] == "SOURCE_KIND_GRAPH_AND_CHECKPOINT" and m["checkpoint"]["meta_graph"].endswith(
        "graph.pbtxt" if as_text else "graph.pb")
    assert [(t["name"], t["dtype"], t["shape"]) for t in m["inputs"]] == [("x:0", "float32", [-1, 3])]
    assert [(t["name"], t["dtype"], t["shape"]) for t in m["outputs"]] == [("y:0", "float32", [-1, 2])]


def test_graph_file_key_mismatch_names_missing_and_unused_keys(client, tmp_path):
    model = models.without_meta(str(tmp_path / "ckpt"), True, False, rename="weights")
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory, graph_file=model.extra["graph"])
    msg = err.value.message
    assert "weights (checkpoint key 'weights')" in msg and "not used by any graph variable: w" in msg
    outcome = client.freeze(model.directory, graph_file=model.extra["graph"], var_map={"weights": "w"})
    _check(outcome, model)


# -- SavedModels -------------------------------------------------------------------
def test_saved_model_v1_builder(client, tmp_path):
    model = models.saved_model_v1(str(tmp_path / "sm"))
    outcome = client.freeze(model.directory)
    _check(outcome, model)
    m = outcome.manifest
    assert m["source_kind"] == "SOURCE_KIND_SAVED_MODEL_V1"
    assert m["signature"] == {
        "name": "serving_default",
        "inputs": {"x": {"name": "features:0", "dtype": "float32", "shape": [-1, 3]}},
        "outputs": {"probabilities": {"name": "scores:0", "dtype": "float32", "shape": [-1, 2]}}}
    # A missing signature is NOT_FOUND for every source kind (one signature picker).
    with pytest.raises(NotFoundError) as err:
        client.freeze(model.directory, signature="nope")
    assert err.value.reason == "ERROR_REASON_SIGNATURE_NOT_FOUND" and err.value.metadata["field"] == "options.signature"


def test_saved_model_v2_two_inputs_of_different_dtypes(client, tmp_path):
    model = models.saved_model_v2(str(tmp_path / "sm2"))
    outcome = client.freeze(model.directory)
    sig = outcome.manifest["signature"]
    assert outcome.manifest["source_kind"] == "SOURCE_KIND_SAVED_MODEL_V2" and sig["name"] == "serving_default"
    assert sig["inputs"]["x"]["dtype"] == "float32" and sig["inputs"]["x"]["shape"] == [-1, 3]
    assert sig["inputs"]["steps"]["dtype"] == "int32" and sig["inputs"]["steps"]["shape"] == [-1]
    assert sig["outputs"]["logits"]["shape"] == [-1, 2] and sig["outputs"]["count"]["dtype"] == "int32"
    feeds = {sig["inputs"][a]["name"]: v for a, v in model.feeds.items()}
    expected = {sig["outputs"][a]["name"]: v for a, v in model.expected.items()}
    _check(outcome, model, feeds=feeds, expected=expected)
    assert client.freeze(model.directory).graph_bytes == outcome.graph_bytes
    # inspect shows each signature entry's dtype and shape, as for a TF1 SavedModel (not "?")
    shown = {alias: (t["name"], t["dtype"], t["shape"])
             for sd in json.loads(client.inspect(model.directory).rendered.json)["signature_defs"]
             for side in ("inputs", "outputs") for alias, t in sd[side].items()}
    assert shown["x"][1:] == ("float32", [-1, 3]) and shown["steps"][1:] == ("int32", [-1]), shown
    assert shown["logits"][1:] == ("float32", [-1, 2]) and shown["count"][1:] == ("int32", []), shown


def test_keras_export(client, tmp_path):
    model = models.keras_export(str(tmp_path / "keras"))
    outcome = client.freeze(model.directory)
    sig = outcome.manifest["signature"]
    assert list(sig["inputs"]) == ["features"] and sig["inputs"]["features"]["shape"] == [-1, 4]
    assert list(sig["outputs"]) == ["output_0"] and sig["outputs"]["output_0"]["shape"] == [-1, 2]
    feeds = {sig["inputs"]["features"]["name"]: model.feeds["features"]}
    _check(outcome, model, feeds=feeds, expected={sig["outputs"]["output_0"]["name"]: model.expected["output_0"]})


def test_tf2_object_checkpoint_and_keras_weights_are_explained(client, tmp_path):
    models.tf2_checkpoint(str(tmp_path / "obj"))
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "obj"))
    assert "TF2 object-based checkpoint" in err.value.message and "tf.saved_model.save" in err.value.message
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "model.weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "k"))
    assert "Keras model/weights file" in err.value.message and "model.export" in err.value.message


# -- moving averages -------------------------------------------------------------------
@pytest.mark.parametrize("resource", KINDS)
def test_ema_shadow_values(client, tmp_path, resource):
    model = models.ema_model(str(tmp_path), resource)
    plain = client.freeze(model.directory)
    _check(plain, model)
    ema = client.freeze(model.directory, ema=True)
    _check(ema, model, expected={"y:0": model.extra["ema_expected"]})
    assert not np.allclose(model.extra["ema_expected"], model.expected["y:0"])
    assert ema.manifest["ema_variables"] == ["w"]
    assert [(t["name"], t["dtype"], t["shape"]) for t in ema.manifest["inputs"]] == [("x:0", "float32", [-1, 3])]
    assert [(t["name"], t["dtype"]) for t in ema.manifest["outputs"]] == [("y:0", "float32")]
    # y feeds only the loss: found where the model meets its target, not as a sink.
    assert ema.manifest["outputs"][0]["reason"].startswith("the model's last layer the loss reads")
    assert any("no ExponentialMovingAverage shadow for offset" in w for w in ema.manifest["warnings"])
    assert list(client.inspect(model.directory).ema_shadows) == ["w"]
    # without --ema, the freeze says the averages are there (the new-user trial missed them)
    said = [w for w in plain.manifest["warnings"] if "moving averages" in w]
    assert said == ["the checkpoint holds moving averages (ExponentialMovingAverage) of w; the frozen graph has "
                    "their raw values. options.ema freezes the averages instead (what a model trained with them "
                    "usually deploys)"], plain.manifest["warnings"]
    assert not any("moving averages" in w for w in ema.manifest["warnings"])


def test_a_checkpoint_saved_by_the_ema_restore_saver_holds_the_averages_and_says_nothing_false(client, tmp_path):
    """Saver(ema.variables_to_restore()) saving again writes the averages under v's own restore:
    the only key is v/ExponentialMovingAverage, restored into v. The frozen graph holds the
    averages; no warning may call them raw values, and --ema changes nothing."""
    tf, tf1 = models.tf, models.tf1

    def build():
        v = tf1.Variable(0.0, dtype=tf.float32, name="v")
        x = tf1.placeholder(tf.float32, [None], name="x")
        tf.multiply(v, x, name="y")
        return v

    with tf.Graph().as_default():
        v = build()
        ema = tf1.train.ExponentialMovingAverage(0.99)
        maintain = ema.apply([v])
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(tf1.assign(v, 10.0))
            sess.run(maintain)
            average = sess.run(ema.average(v))
            tf1.train.Saver().save(sess, str(tmp_path / "trained" / "model.ckpt"))
    with tf.Graph().as_default():
        build()
        saver = tf1.train.Saver(tf1.train.ExponentialMovingAverage(0.99).variables_to_restore())
        with tf1.Session() as sess:
            saver.restore(sess, str(tmp_path / "trained" / "model.ckpt"))
            saver.save(sess, str(tmp_path / "averaged" / "model.ckpt"))
    source = str(tmp_path / "averaged")
    assert [k for k in tf1.train.list_variables(source)] == [("v/ExponentialMovingAverage", [])]
    xs = np.array([1.0, 2.0], np.float32)
    plain = client.freeze(source, outputs=["y"])
    (got,) = models.run_frozen(plain.graph_bytes, {"x:0": xs}, ["y:0"])
    np.testing.assert_allclose(got, average * xs, rtol=1e-6)
    assert abs(average - 10.0) > 1  # the averages, not the raw value
    assert not any("moving average" in w or "ExponentialMovingAverage" in w for w in plain.manifest["warnings"]), \
        plain.manifest["warnings"]
    shown = client.inspect(source, outputs=["y"])
    assert list(shown.ema_shadows) == [] and "ema shadows" not in shown.rendered.text
    assert "moving averages" not in shown.rendered.text
    with_ema = client.freeze(source, outputs=["y"], ema=True)
    assert with_ema.graph_bytes == plain.graph_bytes


@pytest.mark.parametrize("how", ["keys renamed by the saver", "an average named by ExponentialMovingAverage(name=)",
                                 "an average named by ExponentialMovingAverage(name=), of ref variables"])
def test_averages_are_found_by_the_update_that_makes_them_whatever_they_are_named(client, tmp_path, how):
    """The twelfth trial (finding 3): averages saved under keys of the user's own
    (``Saver({"W": w, "W_avg": ema.average(w)})``) were not found: --ema changed nothing and
    warned that there were no averages, and a freeze without it did not say they were there.
    An ``ExponentialMovingAverage(name="ema")`` (shadows ``w/ema``) was missed the same way."""
    tf, tf1 = models.tf, models.tf1
    directory = str(tmp_path / "ckpt")
    xs = np.ones((2, 3), np.float32)
    ref = how.endswith("ref variables")
    # (EMA's initializer conds capture ref variables: TF1 control flow only, as models.ema_model builds them)
    with tf.Graph().as_default(), models.control_flow_v1(ref):
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        w = tf1.get_variable("dense/w", [3, 2], use_resource=not ref)
        y = tf.identity(tf.matmul(x, w), name="y")
        step = tf1.train.get_or_create_global_step()
        train = tf1.train.GradientDescentOptimizer(0.3).minimize(tf.reduce_sum(tf.square(y - 1.0)), global_step=step)
        ema = tf1.train.ExponentialMovingAverage(0.5, name="ema" if how.startswith("an average") else
                                                 "ExponentialMovingAverage")
        with tf.control_dependencies([train]):
            train = ema.apply([w])
        saver = tf1.train.Saver({"W": w, "W_avg": ema.average(w), "step": step} if how.startswith("keys") else None)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            for _ in range(4):
                sess.run(train, {x: xs})
            raw, average = sess.run([y, tf.matmul(x, ema.average(w))], {x: xs})
            saver.save(sess, os.path.join(directory, "model.ckpt"))
    assert not np.allclose(raw, average, atol=1e-3)
    plain = client.freeze(directory, outputs=["y"])
    np.testing.assert_allclose(models.run_frozen(plain.graph_bytes, {"x:0": xs}, ["y:0"])[0], raw, rtol=1e-5)
    assert any("holds moving averages (ExponentialMovingAverage) of dense/w" in w for w in plain.manifest["warnings"]), \
        plain.manifest["warnings"]
    assert list(client.inspect(directory, outputs=["y"]).ema_shadows) == ["dense/w"]
    averaged = client.freeze(directory, outputs=["y"], ema=True)
    np.testing.assert_allclose(models.run_frozen(averaged.graph_bytes, {"x:0": xs}, ["y:0"])[0], average, rtol=1e-5)
    assert averaged.manifest["ema_variables"] == ["dense/w"] and not averaged.manifest["warnings"], \
        averaged.manifest["warnings"]
    if how.startswith("keys"):  # the average's key given by hand: the averages, said to be, with --ema or not
        for ema_too in (False, True):
            mapped = client.freeze(directory, outputs=["y"], var_map={"dense/w": "W_avg"}, ema=ema_too)
            assert mapped.graph_bytes == averaged.graph_bytes and not mapped.manifest["warnings"], \
                mapped.manifest["warnings"]


def test_a_tag_given_for_a_saver_checkpoint_is_refused_not_ignored(client, tmp_path):
    model = models.dense(str(tmp_path / "d"), True)
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(model.directory, tags=["serve"])
    assert err.value.reason == "ERROR_REASON_OPTION_NOT_APPLICABLE" and err.value.metadata["field"] == "options.tags"


class _Vocabulary(models.tf.Module):
    """A TF2 text model: words looked up in a table, then scored (tables of the kinds TF2 has)."""

    def __init__(self, kind):
        super().__init__()
        tf = models.tf
        self.kind = kind
        if kind == "static":  # tf.lookup.StaticHashTable from constants (also Keras StringLookup's)
            init = tf.lookup.KeyValueTensorInitializer(tf.constant(["a", "b", "c"]), tf.constant([1, 2, 3], tf.int64))
            self.table = tf.lookup.StaticHashTable(init, default_value=0)
        else:  # a MutableHashTable filled before saving; "vectors": values that are not scalars
            vectors = kind == "vectors"
            self.table = tf.lookup.experimental.MutableHashTable(
                tf.string, tf.int64, default_value=[0, 0] if vectors else 0)
            self.table.insert(tf.constant(["b", "c"]), tf.constant([[2, 2], [3, 3]] if vectors else [2, 3], tf.int64))
        self.w = tf.Variable(tf.constant([0.5, 1.5, 2.5, 3.5], tf.float32))

    @models.tf.function(input_signature=[models.tf.TensorSpec([None], models.tf.string, name="words")])
    def __call__(self, words):
        ids = self.table.lookup(words)
        return {"ids": ids, "score": models.tf.gather(self.w, ids)}


@pytest.mark.parametrize("kind", ["static", "mutable"])
def test_a_tf2_saved_model_with_a_lookup_table_freezes_into_a_graph_that_runs(client, tmp_path, kind):
    """The signature captures the table's handle: frozen, it is no resource input nothing can feed,
    but constants and a sorted search, as a TF1 table is; verify runs too."""
    module = _Vocabulary(kind)
    models.tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    words = np.array([b"a", b"c", b"zz", b"b"], dtype=object)
    expected = module(models.tf.constant(words))
    outcome = client.freeze(str(tmp_path / "sm"), verify=True)
    m = outcome.manifest
    assert [(i["name"], i["dtype"]) for i in m["inputs"]] == [("words:0", "string")], m["inputs"]
    assert "resource" not in json.dumps(m)
    ids, score = models.run_frozen(outcome.graph_bytes, {"words:0": words}, [o["name"] for o in m["outputs"]])
    np.testing.assert_array_equal(ids, expected["ids"].numpy())
    np.testing.assert_array_equal(score, expected["score"].numpy())
    said = [w for w in m["warnings"] if w.startswith("lookup table")]
    assert len(said) == 1 and "read from the SavedModel's table" in said[0] and "became constants" in said[0], said
    assert not {"HashTableV2", "MutableHashTableV2", "LookupTableFindV2"} & {n.op for n in _all_nodes(outcome.graph_bytes)}


def test_a_tf2_saved_model_table_that_cannot_be_constants_is_refused_naming_it(client, tmp_path):
    module = _Vocabulary("vectors")
    models.tf.saved_model.save(module, str(tmp_path / "sm"), signatures=module.__call__)
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "sm"))
    assert err.value.reason == "ERROR_REASON_GRAPH_DOES_NOT_RUN"
    assert "lookup table" in err.value.message and "values are not scalars" in err.value.message, err.value.message


def test_a_graph_whose_outputs_need_a_resource_handle_input_is_refused(client, tmp_path):
    """A resource Placeholder cannot be fed by any runtime: never a frozen graph with one."""
    tf, tf1 = models.tf, models.tf1
    with tf.Graph().as_default():
        handle = tf1.placeholder(tf.resource, [], name="handle")
        x = tf1.placeholder(tf.float32, [None], name="x")
        w = tf1.get_variable("w", initializer=tf.constant(2.0), use_resource=True)
        tf.add(x * w, tf.raw_ops.ReadVariableOp(resource=handle, dtype=tf.float32), name="y")
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, str(tmp_path / "ck" / "model.ckpt"))
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(str(tmp_path / "ck"), outputs=["y"])
    assert err.value.reason == "ERROR_REASON_GRAPH_DOES_NOT_RUN"
    assert "handle:0, a resource handle input" in err.value.message, err.value.message


def test_inspect_of_a_tf2_saved_model_lists_variables_not_bookkeeping(client, tmp_path):
    model = models.saved_model_v2(str(tmp_path / "sm2"))
    shown = client.inspect(model.directory)
    keys = [v.checkpoint_key for v in shown.variables]
    assert keys and "_CHECKPOINTABLE_OBJECT_GRAPH" not in keys, keys
    assert "\navailable:" not in shown.rendered.text  # a SavedModel has no steps to list


# -- optimisation and verification ---------------------------------------------------------
@pytest.mark.parametrize("fused", [pytest.param(True, id="fused"), pytest.param(False, id="moments")])
def test_optimize_folds_batch_norm_within_tolerance(client, tmp_path, fused):
    model = models.training_graph(str(tmp_path), True, fused=fused)
    plain = client.freeze(model.directory)
    opt = client.freeze(model.directory, optimize=True)
    _check(opt, model, rtol=1e-5, atol=1e-6)
    ops = [n.op for n in _all_nodes(opt.graph_bytes)]
    assert len(ops) < len(_all_nodes(plain.graph_bytes))
    assert not [op for op in ops if op.startswith("FusedBatchNorm") or op in ("Rsqrt", "Identity")]
    # what --optimize did is a note, not a warning (nothing to act on)
    assert any(n.startswith("optimize:") for n in opt.manifest["notes"])
    assert not any(w.startswith("optimize:") for w in opt.manifest["warnings"])


def test_verify_reports_differences(client, tmp_path):
    model = models.training_graph(str(tmp_path), False, cf_v1=True)
    outcome = client.freeze(model.directory, verify=True)
    checks = outcome.manifest["verification"]
    assert [c["name"] for c in checks] == ["probs:0"] and all(c["max_abs_diff"] < 1e-5 for c in checks)
    # Verifying checks the graph a plain freeze writes and leaves its bytes alone (TensorFlow's
    # import had added default attributes, which TF 1.15 refuses, while the manifest said it loads).
    plain = client.freeze(model.directory)
    assert outcome.graph_bytes == plain.graph_bytes
    assert outcome.manifest["loads_in_tensorflowsharp"] == plain.manifest["loads_in_tensorflowsharp"]
    targeted = client.freeze(model.directory, verify=True, target="tensorflowsharp")
    assert targeted.graph_bytes == client.freeze(model.directory, target="tensorflowsharp").graph_bytes
    saved = models.saved_model_v2(str(tmp_path / "sm2"))
    v2 = client.freeze(saved.directory, verify=True).manifest["verification"]
    assert len(v2) == 2 and all(c["max_abs_diff"] < 1e-5 for c in v2)


def test_file_reading_graphs_are_refused_even_with_the_old_unsafe_flag(client, tmp_path):
    from conftest import start_server, stop_server

    model = models.with_file_read(str(tmp_path / "ckpt"))
    for verify in (False, True):
        with pytest.raises(InvalidArgumentError) as err:
            client.freeze(model.directory, verify=verify)
        assert "ReadFile" in err.value.message and err.value.reason == "ERROR_REASON_UNSAFE_OP"
    old = start_server(str(tmp_path / "data"), ["--allow-unsafe-verify"])
    try:
        with FreezeClient(old.target) as c:
            with pytest.raises(InvalidArgumentError):
                c.freeze(model.directory, verify=True)
    finally:
        assert stop_server(old) == 0
    assert any("--allow-unsafe-verify has no effect" in line for line in old.log)


def test_assignment_inside_a_data_dependent_cond_is_refused(client, tmp_path):
    def build():
        x = models.tf1.placeholder(models.tf.float32, [None], name="x")
        counter = models._variable("counter", np.float32(0.0), True)

        def bump():
            with models.tf.control_dependencies([models.tf1.assign_add(counter, 1.0)]):
                return models.tf.identity(x)

        models.tf.cond(models.tf.reduce_sum(x) > 0, bump, lambda: -x, name="out")

    model = models._save(str(tmp_path), build, {"x:0": np.ones(2, np.float32)}, ["out/Identity:0"])
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory, outputs=["out/Identity"])
    assert "still depend on training or saver ops" in err.value.message and "AssignAddVariableOp" in err.value.message


def test_keras_learning_phase_and_partial_restore(client, tmp_path):
    def build():
        x = models.tf1.placeholder(models.tf.float32, [None, 2], name="x")
        phase = models.tf1.placeholder_with_default(True, [], name="keras_learning_phase")
        w = models._variable("w", np.array([[1.0, 2.0], [3.0, 4.0]], np.float32), True)
        bias = models._variable("bias", np.array([0.5, -0.5], np.float32), True)
        h = models.tf.matmul(x, w) + bias
        models.tf.cond(phase, lambda: models.tf.nn.dropout(h, rate=0.5), lambda: h, name="out")

    feeds = {"x:0": np.eye(2, dtype=np.float32), "keras_learning_phase:0": False}
    model = models._save(str(tmp_path / "ckpt"), build, feeds, ["out/Identity:0"])
    outcome = client.freeze(model.directory, outputs=["out/Identity"])
    assert outcome.manifest["bindings"] == [{"name": "keras_learning_phase:0", "value": False,
                                             "reason": "inference value of a training switch"}]
    assert [i["name"] for i in outcome.manifest["inputs"]] == ["x:0"]
    (got,) = models.run_frozen(outcome.graph_bytes, {"x:0": np.eye(2, dtype=np.float32)}, ["out/Identity:0"])
    np.testing.assert_allclose(got, model.expected["out/Identity:0"])
    # Only w from the checkpoint: bias keeps its constant initial value (the same here, so equal).
    partial = client.freeze(model.directory, outputs=["out/Identity"], include_variables=["w"])
    assert any("bias takes its initial value" in w for w in partial.manifest["warnings"])
    (got,) = models.run_frozen(partial.graph_bytes, {"x:0": np.eye(2, dtype=np.float32)}, ["out/Identity:0"])
    np.testing.assert_allclose(got, model.expected["out/Identity:0"])


def test_optimize_keeps_a_large_splat_constant(client, tmp_path):
    """A constant of one value broadcast to a large shape (160 KB declared, 4 bytes
    stored) is not a weight: optimize keeps it a Const, the graph needs no new input."""
    def build():
        x = models.tf1.placeholder(models.tf.float32, [None, 200, 200], name="x")
        w = models._variable("w", np.float32(2.0), True)
        models.tf.add(x * w, models.tf.constant(1.5, shape=[200, 200]), name="y")

    feeds = {"x:0": np.ones((1, 200, 200), np.float32)}
    model = models._save(str(tmp_path), build, feeds, ["y:0"])
    outcome = client.freeze(model.directory, optimize=True)
    assert [i["name"] for i in outcome.manifest["inputs"]] == ["x:0"]
    got = models.run_frozen(outcome.graph_bytes, feeds, ["y:0"])[0]
    np.testing.assert_allclose(got, model.expected["y:0"])


@pytest.mark.parametrize("inputs", [None, ["IteratorGetNext:0"]])
def test_tf_data_fed_model_is_cut_at_its_iterator(client, tmp_path, inputs):
    """A model trained from tf.data (an initializable iterator): data enters at
    IteratorGetNext, which becomes placeholders of the dtypes and shapes the iterator
    declares, automatically or when named as the input; nothing above it (iterator,
    datasets) is checked or kept, and the iterator's initializer and string handle are
    never outputs. The frozen graph runs and equals the model."""
    model = models.dataset_fed(str(tmp_path / "ds"))
    outcome = client.freeze(model.directory, inputs=inputs or ())
    m = outcome.manifest
    assert [o["name"] for o in m["outputs"]] == ["probabilities:0"]  # the head, standing for the logits
    assert [(i["name"], i["dtype"], i["shape"]) for i in m["inputs"]] == [("IteratorGetNext:0", "float32", [-1, 3])]
    assert any("tf.data" in w for w in m["warnings"])
    # trial 13 (F02): named in --inputs, the warning listed the labels' placeholder too, which the graph lacks
    assert not any("IteratorGetNext_1" in w for w in m["warnings"]), m["warnings"]
    ops = set(models.graph_ops(outcome.graph_bytes))
    assert not {op for op in ops if "Iterator" in op or "Dataset" in op}
    got = models.run_frozen(outcome.graph_bytes, {"IteratorGetNext:0": model.feeds["IteratorGetNext:0"]},
                            ["probabilities:0"])
    np.testing.assert_allclose(got[0], model.expected["probabilities:0"], rtol=1e-6, atol=1e-6)
    info = client.inspect(model.directory)
    assert [i.name for i in info.inputs] == ["IteratorGetNext:0"]
    assert [o.name for o in info.outputs] == ["probabilities:0"]


@pytest.mark.parametrize("inputs", [None, ["serving_input"]])
def test_an_input_whose_default_the_dataset_gave_is_the_one_input(client, tmp_path, inputs):
    """The twelfth trial (finding 4): ``x = placeholder_with_default(iterator.get_next())`` kept
    its default, a placeholder made of the iterator, so the manifest listed both and every
    runner given --manifest demanded the iterator's; naming x in --inputs changed nothing.
    Without the dataset, x has no default: it becomes a plain placeholder, the only input."""
    tf, tf1 = models.tf, models.tf1
    xs = np.arange(12, dtype=np.float32).reshape(4, 3) / 10
    with tf.Graph().as_default():
        data = tf.data.Dataset.from_tensor_slices((xs, np.arange(4) % 2)).batch(2).repeat()
        features, labels = tf1.data.make_one_shot_iterator(data).get_next()
        x = tf1.placeholder_with_default(features, [None, 3], name="serving_input")
        logits = tf.matmul(x, tf1.get_variable("w", [3, 2]))
        tf.nn.softmax(logits, name="probs")
        train = tf1.train.AdamOptimizer().minimize(tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train)
            expected = sess.run("probs:0", {x: xs})
            tf1.train.Saver().save(sess, str(tmp_path / "ckpt" / "model.ckpt"))
    outcome = client.freeze(str(tmp_path / "ckpt"), inputs=inputs or ())
    m = outcome.manifest
    assert [(i["name"], i["has_default"]) for i in m["inputs"]] == [("serving_input:0", False)], m["inputs"]
    assert [o["name"] for o in m["outputs"]] == ["probs:0"]
    assert any("as the default of serving_input:0" in w and "feed serving_input:0" in w and "no default" in w
               for w in m["warnings"]), m["warnings"]
    assert "PlaceholderWithDefault" not in set(models.graph_ops(outcome.graph_bytes))
    np.testing.assert_allclose(models.run_frozen(outcome.graph_bytes, {"serving_input:0": xs}, ["probs:0"])[0],
                               expected, rtol=1e-6)
    assert [i.name for i in client.inspect(str(tmp_path / "ckpt")).inputs] == ["serving_input:0"]


def test_inspect_and_freeze_agree_on_inputs_when_switches_are_bound(client, tmp_path):
    """Finding 6: inspect listed the training switches (is_training, keep_prob) as inputs
    while a freeze binds them; both now give the same inputs, and inspect still lists the
    switches as switches."""
    model = models.training_graph(str(tmp_path / "t"), True)
    info = client.inspect(model.directory)
    outcome = client.freeze(model.directory)
    assert [i.name for i in info.inputs] == [i["name"] for i in outcome.manifest["inputs"]] == ["x:0"]
    assert {s.name for s in info.switches} >= {"is_training:0", "keep_prob:0"}
    assert {b["name"] for b in outcome.manifest["bindings"]} >= {"is_training:0", "keep_prob:0"}


@pytest.mark.parametrize("options", [{}, {"outputs": ["probabilities"], "optimize": True},
                                     {"outputs": ["probabilities"], "verify": True}])
def test_a_vocabulary_table_from_constants_needs_no_initialisation(client, tmp_path, options):
    """Issue 22, finding 1: a text model whose tokens go through a vocabulary table
    (tables_initializer) used to freeze and then fail at run time ("Table not
    initialized"). The table becomes constants and a sorted search: the frozen graph
    runs without any initialisation and equals the model, unknown tokens included."""
    model = models.text_with_vocabulary(str(tmp_path / "text"))
    outcome = client.freeze(model.directory, **options)
    assert "probabilities:0" in [o["name"] for o in outcome.manifest["outputs"]]
    assert [i["name"] for i in outcome.manifest["inputs"]] == ["tokens:0"]
    assert any("lookup table" in w for w in outcome.manifest["warnings"])
    ops = set(models.graph_ops(outcome.graph_bytes))
    assert not {op for op in ops if "Table" in op}
    got = models.run_frozen(outcome.graph_bytes, model.feeds, ["probabilities:0"])
    np.testing.assert_allclose(got[0], model.expected["probabilities:0"], rtol=1e-6, atol=1e-6)


def test_a_table_filled_from_a_file_is_refused_saying_so(client, tmp_path):
    model = models.text_with_vocabulary_file(str(tmp_path / "text"))
    with pytest.raises(FailedPreconditionError) as err:
        client.freeze(model.directory, outputs=["features"])
    assert err.value.reason == "ERROR_REASON_GRAPH_DOES_NOT_RUN"
    assert "reads a file" in err.value.message and "hash_table" in err.value.message


def _tensors(items, from_manifest=False):
    if not from_manifest:  # protobuf TensorInfo messages
        return [(t.name, t.dtype, None if not t.HasField("shape") else [int(v.number_value) for v in t.shape.values])
                for t in items]
    return [(t["name"], t["dtype"], t["shape"]) for t in items]


@pytest.mark.parametrize("kind", ["switches", "two_signatures", "dense"])
def test_inspect_equals_the_manifest(client, tmp_path, kind):
    """Issue 24, finding 5: inspect and freeze say the same: inputs, outputs, their dtypes and
    shapes, and the bindings (a bound switch is a binding, not an input)."""
    model = {"switches": lambda d: models.training_graph(d, True),
             "two_signatures": models.two_signatures,
             "dense": lambda d: models.dense(d, True)}[kind](str(tmp_path / "m"))
    info = client.inspect(model.directory)
    m = client.freeze(model.directory).manifest
    assert _tensors(info.inputs) == _tensors(m["inputs"], True)
    assert _tensors(info.outputs) == _tensors(m["outputs"], True)
    assert [(b.name, b.reason) for b in info.bindings] == [(b["name"], b["reason"]) for b in m["bindings"]]
    if kind == "switches":
        assert {b.name for b in info.bindings} == {"is_training:0", "keep_prob:0"}
        assert "bound:      is_training:0 = false" in info.rendered.text
        unbound = client.inspect(model.directory, bind=["keep_prob="])
        assert "keep_prob:0" in [t.name for t in unbound.inputs] and "keep_prob:0" not in {
            b.name for b in unbound.bindings}
    if kind == "two_signatures":  # every signature with its tensors, every tag set
        sigs = {s.name: s for s in info.signature_defs}
        assert sorted(sigs) == ["embed", "serving_default"]
        assert sigs["embed"].outputs["embedding"].name == "embedding:0"
        assert [int(v.number_value) for v in sigs["embed"].inputs["x"].shape.values] == [-1, 3]
        assert sigs["serving_default"].outputs["probabilities"].name == "scores:0"
        assert [list(t.tags) for t in info.tag_sets] == [["serve"]]
        assert "signature embed:" in info.rendered.text and "tag sets:   serve" in info.rendered.text


def test_inspect_of_a_frozen_graph_summarises_it(client, tmp_path):
    """`inspect MODEL.pb`: inputs, outputs, op counts, parameters and whether TF 1.15 loads it;
    a freeze of it says it is frozen already; a graph with variables asks for its checkpoint."""
    from tensorflow.core.framework import graph_pb2

    model = models.dense(str(tmp_path / "m"), True)
    pb = tmp_path / "frozen.pb"
    m = client.freeze(model.directory, output_path=str(pb), target="tensorflowsharp").manifest
    info = client.inspect(str(pb))
    assert info.source_kind == freeze_pb2.SOURCE_KIND_FROZEN_GRAPH
    assert _tensors(info.inputs) == _tensors(m["inputs"], True)
    assert [t.name for t in info.outputs] == [t["name"] for t in m["outputs"]]
    graph = graph_pb2.GraphDef.FromString(pb.read_bytes())
    assert info.graph.node_count == len(graph.node) == m["node_count"]
    assert info.graph.size_bytes == pb.stat().st_size
    assert sum(c.count for c in info.graph.op_counts) == len(graph.node)
    weights = sum(int(np.prod([d.size for d in n.attr["value"].tensor.tensor_shape.dim]))
                  for n in graph.node if n.op == "Const" and n.attr["value"].tensor.dtype == 1)
    assert info.graph.parameters == weights > 0
    assert info.graph.loads_in_tensorflow_1_15 and "tf 1.15:    loads" in info.rendered.text
    with pytest.raises(NotFoundError) as err:
        client.freeze(str(pb))
    assert "frozen already" in err.value.message
    meta = [f for f in os.listdir(model.directory) if f.endswith(".meta")][0]
    with open(os.path.join(model.directory, meta), "rb") as fh:
        from tensorflow.core.protobuf import meta_graph_pb2
        graph_def = meta_graph_pb2.MetaGraphDef.FromString(fh.read()).graph_def
    (tmp_path / "with_vars.pb").write_bytes(graph_def.SerializeToString())
    with pytest.raises(NotFoundError) as err:
        client.inspect(str(tmp_path / "with_vars.pb"))
    assert "no checkpoint" in err.value.message and "--graph" in err.value.message


@pytest.mark.parametrize("kind", ["saved_model_v1", "saved_model_v2"])
def test_a_step_given_for_a_saved_model_is_refused_not_ignored(client, tmp_path, kind):
    """A SavedModel holds one set of variables: a global step chosen for it would be silently
    ignored, so it is refused naming the option (as bind is for a TF2 SavedModel)."""
    from tffreeze import InvalidArgumentError

    model = getattr(models, kind)(str(tmp_path / kind))
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(model.directory, step=100)
    assert err.value.reason == "ERROR_REASON_OPTION_NOT_APPLICABLE" and "step" in err.value.message
    assert client.freeze(model.directory).manifest["outputs"]  # without it, the same model freezes


def test_a_cut_at_a_computed_tensor_warns_naming_its_own_op(client, tmp_path):
    """--inputs at a tensor an op computes: the warning names that op (MatMul), not the
    Placeholder the cut turns it into."""
    model = models.dense(str(tmp_path / "dense"), True)
    outcome = client.freeze(model.directory, inputs=["MatMul"], outputs=["y"])
    cut = [w for w in outcome.manifest["warnings"] if "not a placeholder" in w]
    assert cut and "is a MatMul, not a placeholder" in cut[0], outcome.manifest["warnings"]


def test_a_file_removed_while_it_is_uploaded_is_said_so(client, tmp_path):
    """Trial 13 (F06): a checkpoint file removed during its upload gave "Exception iterating
    requests! [UNKNOWN]" and a bare "[Errno 2]"."""
    import hashlib

    from tffreeze import FailedPreconditionError
    from tffreeze.source import LocalFile

    path = tmp_path / "model.ckpt.data-00000-of-00001"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    f = LocalFile(path=path.name, local=str(path), sha256=hashlib.sha256(data).hexdigest(), size=len(data))

    path.unlink()  # (after it was listed and hashed, before its upload: an open file is read to its end)
    with pytest.raises(FailedPreconditionError) as err:
        client.upload([f])
    assert "%s was removed while it was being uploaded" % path in err.value.message, err.value.message
    assert "run the command again once the checkpoint is complete" in err.value.message


def test_a_switch_a_signature_lists_as_an_input_is_bound_and_no_input(client, tmp_path):
    """Trial 14 (finding 3): a SavedModel whose signature lists keep_prob among its inputs froze
    keep_prob as a constant (bound to 1) and still listed it as an input, so every runner given
    --manifest demanded it, and feeding it brought the dropout back."""
    tf, tf1 = models.tf, models.tf1
    export = str(tmp_path / "sm")
    xs = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    with tf.Graph().as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        keep_prob = tf1.placeholder(tf.float32, name="keep_prob")
        h = tf.nn.dropout(tf.matmul(x, tf1.get_variable("w", [4, 3])), rate=1 - keep_prob)
        probs = tf.nn.softmax(h, name="probs")
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            expected = sess.run(probs, {x: xs, keep_prob: 1.0})
            builder = tf1.saved_model.Builder(export)
            sig = tf1.saved_model.predict_signature_def({"x": x, "keep_prob": keep_prob}, {"probs": probs})
            builder.add_meta_graph_and_variables(sess, ["serve"], signature_def_map={"serving_default": sig})
            builder.save()
    outcome = client.freeze(export)
    m = outcome.manifest
    assert [i["name"] for i in m["inputs"]] == ["x:0"], m["inputs"]
    assert [b["name"] for b in m["bindings"]] == ["keep_prob:0"], m["bindings"]
    assert any("keep_prob:0 was bound" in w for w in m["warnings"]), m["warnings"]
    np.testing.assert_allclose(models.run_frozen(outcome.graph_bytes, {"x:0": xs}, ["probs:0"])[0], expected,
                               rtol=1e-6)
