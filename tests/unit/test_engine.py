"""The engine in-process (no server): limits and savers that need the mapping."""

import os

import numpy as np
import pytest

import models
from models import tf, tf1
from tffreeze_server.core import engine
from tffreeze_server.core.errors import FailedPrecondition, ResourceExhausted
from tffreeze_server.core.spec import FreezeSpec, ServerLimits


def test_graph_over_the_protobuf_limit_is_refused_before_writing(tmp_path):
    model = models.dense(str(tmp_path / "ckpt"), True)
    out = tmp_path / "out.pb"
    # The real limit is 2 GB; a lowered one exercises the same check cheaply.
    with pytest.raises(ResourceExhausted) as err:
        engine.freeze(model.directory, FreezeSpec(limits=ServerLimits(max_graph_bytes=64)), str(out))
    assert "over protobuf's 2 GB limit" in err.value.message and "largest variables: w" in err.value.message
    assert err.value.reason == "ERROR_REASON_GRAPH_TOO_LARGE"
    assert not out.exists() and not (tmp_path / "out.pb.part").exists()


def test_sharded_saver_over_two_devices(tmp_path):
    d = str(tmp_path / "sharded")
    os.makedirs(d)
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        with tf.device("/cpu:0"):
            a = tf1.get_variable("a", initializer=tf.constant([[1.0, 2.0], [3.0, 4.0]]))
        with tf.device("/device:CPU:1"):
            b = tf1.get_variable("b", initializer=tf.constant([0.5, -0.5]))
        tf.add(tf.matmul(x, a), b, name="y")
        saver = tf1.train.Saver(sharded=True)
        config = tf1.ConfigProto(device_count={"CPU": 2}, allow_soft_placement=True)
        with tf1.Session(graph=g, config=config) as s:
            s.run(tf1.global_variables_initializer())
            saver.save(s, os.path.join(d, "model.ckpt"))
    assert len([f for f in os.listdir(d) if ".data-" in f]) == 2
    result = engine.freeze(d, FreezeSpec(), str(tmp_path / "out.pb"))
    assert result.variables_frozen == 2
    got = models.run_frozen((tmp_path / "out.pb").read_bytes(), {"x:0": np.eye(2, dtype=np.float32)}, ["y:0"])[0]
    np.testing.assert_allclose(got, [[1.5, 1.5], [3.5, 3.5]])


def test_variable_missing_from_checkpoint_is_named(tmp_path):
    d = str(tmp_path / "partial")
    os.makedirs(d)
    g = tf.Graph()
    with g.as_default():
        v1 = tf1.get_variable("v1", initializer=tf.constant(1.0))
        v2 = tf1.get_variable("v2", initializer=tf.constant(2.0))
        tf.add(v1, v2, name="sum")
        saver = tf1.train.Saver([v1])  # partial save, as in the seeds
        with tf1.Session(graph=g) as s:
            s.run(tf1.global_variables_initializer())
            saver.save(s, os.path.join(d, "model.ckpt"))
    with pytest.raises(FailedPrecondition) as err:
        engine.freeze(d, FreezeSpec(), str(tmp_path / "out.pb"))
    assert "v2 (checkpoint key 'v2')" in err.value.message
    # no unused key to map it to; its initial value is a constant: the fix offered is to keep it
    assert "freeze them at their initial values (options.exclude_variables v2)" in err.value.message
    assert "var_map" not in err.value.message
    assert err.value.reason == "ERROR_REASON_VARIABLE_VALUE_MISSING" and err.value.metadata["variables"] == "v2"
    # A failure after resolution names the outputs that were chosen, and why.
    assert err.value.metadata["outputs"] == "sum:0" and "[outputs: sum:0 (graph sink" in err.value.message
    # Leaving v2 out of the restore freezes it to its (constant) initial value, as a partial restore does.
    result = engine.freeze(d, FreezeSpec(exclude_variables=("v2",)), str(tmp_path / "out.pb"))
    assert any("v2 takes its initial value" in w for w in result.warnings)
    assert models.run_frozen((tmp_path / "out.pb").read_bytes(), {}, ["sum:0"])[0] == 3.0


@pytest.mark.parametrize("failure", [KeyError("gradients/OptionalFromValue_grad/OptionalGetValue"), RecursionError()])
def test_unexpected_failures_on_an_upload_are_not_internal(tmp_path, monkeypatch, failure):
    """A bug the upload triggers is FAILED_PRECONDITION naming the step, never INTERNAL."""
    model = models.dense(str(tmp_path / "ckpt"), True)

    def broken(*args, **kwargs):
        raise failure

    monkeypatch.setattr(engine, "read_values", broken)
    with pytest.raises(FailedPrecondition) as err:
        engine.freeze(model.directory, FreezeSpec(), str(tmp_path / "out.pb"))
    assert err.value.reason == "ERROR_REASON_GRAPH_UNSUPPORTED" and err.value.metadata["error"] == type(failure).__name__
    assert err.value.metadata["stage"] == "STAGE_LOADING_GRAPH" and "while loading graph" in err.value.message
    assert not (tmp_path / "out.pb").exists()


def test_a_full_disk_while_writing_the_frozen_graph_is_resource_exhausted(tmp_path):
    """Finding 6: the frozen graph's write hitting ENOSPC (here: its .part file is
    /dev/full) is RESOURCE_EXHAUSTED naming the full disk, not INTERNAL, and no
    server path is in the message; nothing is left at the output path."""
    model = models.dense(str(tmp_path / "ckpt"), True)
    out = tmp_path / "out" / "graph.pb"
    out.parent.mkdir()
    os.symlink("/dev/full", str(out) + ".part")
    with pytest.raises(ResourceExhausted) as err:
        engine.freeze(model.directory, FreezeSpec(), str(out))
    assert err.value.reason == "ERROR_REASON_STORE_FULL" and "disk is full" in err.value.message
    assert str(tmp_path) not in err.value.message and not out.exists()


def test_running_out_of_memory_is_resource_exhausted(tmp_path, monkeypatch):
    model = models.dense(str(tmp_path / "ckpt"), True)

    def hungry(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(engine, "read_values", hungry)
    with pytest.raises(ResourceExhausted) as err:
        engine.freeze(model.directory, FreezeSpec(), str(tmp_path / "out.pb"))
    assert "ran out of memory" in err.value.message


def test_an_output_index_an_op_does_not_have_is_named_with_the_ones_it_has(tmp_path):
    """Trial 7 R11: `--outputs probs:1` was told to "name the tensor whose computation it orders"
    (for a Softmax), and an op with no output read "is a AssignAddVariableOp op"."""
    from tffreeze_server.core import resolve
    from tffreeze_server.core.errors import InvalidArgument

    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 2], name="x")
        v = tf1.get_variable("v", [2, 3], use_resource=True)
        tf.nn.softmax(tf.matmul(x, v), name="probs")
        v.assign_add(tf.ones([2, 3]), name="bump", read_value=False)
        meta = tf1.train.export_meta_graph(graph=g)
    with pytest.raises(InvalidArgument) as err:
        resolve.resolve(meta, ["probs:1"], [])
    assert "probs is a Softmax op with 1 output(s) (probs:0); name one of them" in err.value.message
    with pytest.raises(InvalidArgument) as err:
        resolve.resolve(meta, ["bump:0"], [])
    assert "bump is an AssignAddVariableOp op, which produces no tensor" in err.value.message, err.value.message


@pytest.mark.parametrize("resource", [True, False])
def test_a_check_ordered_before_a_variable_read_still_runs_in_the_frozen_graph(tmp_path, resource):
    """Trial 7 R8: `with tf.control_dependencies([assert_non_negative(x)]): y = matmul(x, w)` puts
    the edge on w's ReadVariableOp; the frozen graph's Identity had lost it and a negative input
    passed. (TensorFlow's own convert_variables_to_constants drops it too.)"""
    d = str(tmp_path / "ckpt")
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        w = tf1.get_variable("w", [4, 2], use_resource=resource)
        with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="x must be >= 0")]):
            tf.identity(tf.matmul(x, w), name="y")
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            tf1.train.Saver().save(sess, os.path.join(d, "model.ckpt"))
    out = str(tmp_path / "out.pb")
    engine.freeze(d, FreezeSpec(outputs=("y",)), out)
    frozen = tf1.GraphDef()
    with open(out, "rb") as fh:
        frozen.ParseFromString(fh.read())
    run = tf.Graph()
    with run.as_default():
        tf1.import_graph_def(frozen, name="")
        with tf1.Session(graph=run) as sess:
            assert sess.run("y:0", {"x:0": np.ones((1, 4), np.float32)}).shape == (1, 2)
            with pytest.raises(tf.errors.InvalidArgumentError, match="x must be >= 0"):
                sess.run("y:0", {"x:0": -np.ones((1, 4), np.float32)})


def test_a_trained_tf2_loop_is_frozen_without_its_gradient_accumulators(tmp_path):
    """Trial 7 D4: an RNN written with tf.scan (TF2 control flow) and trained with Adam kept, in the
    frozen inference graph, the 17 TensorList accumulators its backward loop needed: --format
    tflite then failed on them, even with the --input-shape its first error asked for."""
    from tffreeze_api.v1 import freeze_pb2

    d = str(tmp_path / "ckpt")
    rs = np.random.RandomState(0)
    g = tf.Graph()
    with g.as_default():
        tf1.enable_control_flow_v2()
        x = tf1.placeholder(tf.float32, [None, 7, 5], name="x")
        y = tf1.placeholder(tf.int64, [None], name="y")
        w = tf1.get_variable("lstm/kernel", [5 + 8, 32])

        def step(carry, xt):
            c, h = carry
            i, f, o, u = tf.split(tf.matmul(tf.concat([xt, h], 1), w), 4, 1)
            c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(u)
            return c, tf.sigmoid(o) * tf.tanh(c)
        z0 = tf.zeros(tf.stack([tf.shape(x)[0], 8]))
        _, hs = tf.scan(step, tf.transpose(x, [1, 0, 2]), initializer=(z0, z0))
        logits = tf.matmul(hs[-1], tf1.get_variable("wo", [8, 4]), name="logits")
        tf.nn.softmax(logits, name="probs")
        train = tf1.train.AdamOptimizer().minimize(
            tf.reduce_mean(tf1.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train, {x: rs.rand(4, 7, 5), y: rs.randint(0, 4, 4)})
            tf1.train.Saver().save(sess, os.path.join(d, "model.ckpt"))
    out = str(tmp_path / "rnn.pb")
    result = engine.freeze(d, FreezeSpec(outputs=("probs",)), out)
    frozen = tf1.GraphDef()
    with open(out, "rb") as fh:
        frozen.ParseFromString(fh.read())
    assert not [n.name for n in frozen.node if "gradients/" in n.name]
    assert any("gradient accumulator(s)" in n for n in result.notes), list(result.notes)
    lite = engine.freeze(d, FreezeSpec(outputs=("probs",), format="tflite", input_shapes={"x": (1, 7, 5)},
                                       limits=ServerLimits(sandboxed=True)),  # (the engine in-process, as a task runs it)
                         str(tmp_path / "rnn.tflite"))
    assert lite.format == freeze_pb2.FORMAT_TFLITE and os.path.getsize(str(tmp_path / "rnn.tflite")) > 0


def test_a_training_switch_kept_an_input_whose_branch_updates_variables_is_named_with_its_bind(tmp_path):
    """Trial 9 M1: `--bind is_training=` (keep the switch an input) on a hand-written batch norm whose
    training branch assigns the moving averages was refused with "choose other outputs ... check that
    every variable they read is in the checkpoint", though the outputs were right."""
    from tffreeze_server.core.errors import FailedPrecondition

    d = str(tmp_path / "ckpt")
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 4], name="x")
        y = tf1.placeholder(tf.int32, [None], name="y")
        is_training = tf1.placeholder(tf.bool, [], name="is_training")
        h = tf.matmul(x, tf1.get_variable("w", [4, 6], use_resource=True))
        mm = tf1.get_variable("bn/moving_mean", [6], initializer=tf1.zeros_initializer(), trainable=False,
                              use_resource=True)

        def train_branch():
            mean = tf.reduce_mean(h, 0)
            with tf.control_dependencies([mm.assign(0.9 * mm + 0.1 * mean)]):
                return tf.identity(mean)
        m = tf.cond(is_training, train_branch, lambda: tf.identity(mm.read_value()))
        logits = tf.matmul(h - m, tf1.get_variable("w2", [6, 3], use_resource=True))
        tf.nn.softmax(logits, name="probs")
        train = tf1.train.AdamOptimizer().minimize(
            tf.reduce_mean(tf1.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)))
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train, {x: np.ones((2, 4)), y: [0, 1], is_training: True})
            tf1.train.Saver().save(sess, os.path.join(d, "model.ckpt"))
    assert engine.freeze(d, FreezeSpec(outputs=("probs",)), str(tmp_path / "a.pb")).inputs  # bound by default
    with pytest.raises(FailedPrecondition) as err:
        engine.freeze(d, FreezeSpec(outputs=("probs",), bind={"is_training": None}), str(tmp_path / "b.pb"))
    assert "is_training is kept an input (options.bind is_training=)" in err.value.message, err.value.message
    assert "options.bind is_training=false" in err.value.message and err.value.metadata["field"] == "options.bind"
