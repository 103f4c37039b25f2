"""Issue 34, trial 6: an option that does not apply to a TF1 SavedModel is refused, as for the
other kinds, never ignored (M9); outputs named twice are written once (M6). Real server, real
`tffreeze` command."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import models
from conftest import start_server, stop_server

TFFREEZE = os.path.join(os.path.dirname(sys.executable), "tffreeze")


def cli(*args):
    env = dict(os.environ)
    env.pop("TFFREEZE_SERVER", None)
    return subprocess.run([TFFREEZE, *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(str(tmp_path_factory.mktemp("trial6-data")))
    yield s
    stop_server(s)


def test_a_graph_file_for_a_tf1_saved_model_is_refused_not_ignored(srv, tmp_path):
    m = models.saved_model_v1(str(tmp_path / "sm"))
    graph = tmp_path / "other.pbtxt"
    graph.write_text("node { name: 'c' op: 'Const' attr { key: 'dtype' value { type: DT_FLOAT } } "
                     "attr { key: 'value' value { tensor { dtype: DT_FLOAT tensor_shape {} float_val: 1 } } } }")
    r = cli("freeze", m.directory, "-o", str(tmp_path / "o.pb"), "--graph", str(graph), "--server", srv.target)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "--graph does not apply to a TF1 SavedModel" in r.stderr, r.stderr
    assert "OPTION_NOT_APPLICABLE" in r.stderr and "options." not in r.stderr
    assert not os.path.exists(tmp_path / "o.pb")


def test_a_saved_model_pb_given_as_the_graph_file_is_told_to_be_frozen_as_a_saved_model(srv, tmp_path):
    """Trial 7 R5: --graph sm/saved_model.pb beside a checkpoint without .meta was "not a GraphDef
    or MetaGraphDef ... write the graph with tf.io.write_graph", naming a staging path."""
    import shutil

    m = models.saved_model_v1(str(tmp_path / "sm"))
    ckpt = models.dense(str(tmp_path / "ckpt"), True)
    for name in os.listdir(ckpt.directory):
        if name.endswith(".meta"):
            os.remove(os.path.join(ckpt.directory, name))
    graph = os.path.join(m.directory, "saved_model.pb")
    r = cli("freeze", ckpt.directory, "-o", str(tmp_path / "o.pb"), "--graph", graph, "--server", srv.target)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "is a SavedModel's saved_model.pb" in r.stderr and "--graph" in r.stderr, r.stderr
    assert ".tffreeze-graph" not in r.stderr and "write_graph" not in r.stderr, r.stderr
    shutil.rmtree(str(tmp_path / "sm"))


def test_outputs_named_twice_are_written_once(srv, tmp_path):
    m = models.dense(str(tmp_path / "run"), True)
    out, manifest = tmp_path / "o.pb", tmp_path / "o.json"
    name = sorted(m.expected)[0]
    r = cli("freeze", m.directory, "-o", str(out), "--outputs", "%s,%s" % (name, name.split(":")[0]),
            "--manifest", str(manifest), "--server", srv.target)
    assert r.returncode == 0, r.stderr
    written = json.loads(manifest.read_text())
    assert [o["name"] for o in written["outputs"]] == [name]
    assert "more than once" in r.stderr + r.stdout


def _classifier_checkpoint(directory: str) -> str:
    import tensorflow as tf
    tf1 = tf.compat.v1
    g = tf.Graph()
    with g.as_default():
        x = tf1.placeholder(tf.float32, [None, 3], name="x")
        labels = tf1.placeholder(tf.int32, [None], name="labels")
        logits = tf.matmul(x, tf1.get_variable("w", [3, 2]), name="logits")
        tf.nn.softmax(logits, name="probs")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
        train = tf1.train.GradientDescentOptimizer(0.1).minimize(loss)
        with tf1.Session() as sess:
            sess.run(tf1.global_variables_initializer())
            sess.run(train, {x: [[1, 2, 3]], labels: [1]})
            os.makedirs(directory, exist_ok=True)
            tf1.train.Saver().save(sess, os.path.join(directory, "model.ckpt"))
    return directory


def test_inspect_s_report_names_options_as_flags(srv, tmp_path):
    """N4 (trial 6): the report every client prints says --outputs, not the request field."""
    source = _classifier_checkpoint(str(tmp_path / "cls"))
    r = cli("inspect", source, "--server", srv.target)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stdout.splitlines() if line.startswith("warning:")]
    assert any("--outputs" in line for line in warned), r.stdout
    assert "options." not in r.stdout, r.stdout


def test_a_graph_file_given_beside_a_meta_is_named_as_the_user_gave_it(srv, tmp_path):
    """R15 (trial 6): the warning names the graph file, not the folder the client staged it in."""
    import tensorflow as tf
    source = _classifier_checkpoint(str(tmp_path / "cls"))
    from tensorflow.core.protobuf import meta_graph_pb2
    meta = meta_graph_pb2.MetaGraphDef()
    with open(os.path.join(source, "model.ckpt.meta"), "rb") as fh:
        meta.ParseFromString(fh.read())
    graph = str(tmp_path / "new_graph.pbtxt")
    tf.io.write_graph(meta.graph_def, str(tmp_path), "new_graph.pbtxt")
    r = cli("freeze", source, "-o", str(tmp_path / "o.pb"), "--graph", graph, "--outputs", "probs",
            "--server", srv.target)
    assert r.returncode == 0, r.stderr
    assert "the graph file new_graph.pbtxt is used instead of model.ckpt.meta" in r.stderr, r.stderr
    assert ".tffreeze-graph" not in r.stderr + r.stdout


def test_serve_on_a_port_in_use_says_so_and_nothing_else(tmp_path):
    """R4 of the sixth trial: the clear line was followed by a BrokenPipeError traceback from
    each worker, and TensorFlow's start-up lines (absl, oneDNN, CUDA probing)."""
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("TFFREEZE_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
        done = subprocess.run([TFFREEZE, "serve", "--port", str(port), "--data-dir", str(tmp_path / "data")],
                              capture_output=True, text=True, env=env, timeout=300)
    finally:
        taken.close()
    assert done.returncode == 1
    assert done.stderr.strip() == ("tffreeze serve: cannot listen on 127.0.0.1:%d (address in use or not available); "
                                   "pick another --port" % port), done.stderr


def test_serve_names_the_data_dir_flag_when_its_folder_cannot_be_made(tmp_path):
    """R4: a --data-dir the server cannot make gave a bare "[Errno ...]" (/proc takes no folder,
    even from root)."""
    done = subprocess.run([TFFREEZE, "serve", "--port", "0", "--data-dir", "/proc/tffreeze-no-data"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip() == ("tffreeze serve: --data-dir /proc/tffreeze-no-data: No such file or directory "
                                   "(/proc/tffreeze-no-data): give a folder you can write (it is made when missing)"), \
        done.stderr


def test_a_graph_file_for_a_step_saved_without_its_meta_warns_nothing_contradictory(srv, tmp_path):
    """Trial 10, finding 14: for a step saved with write_meta_graph=False, --graph was answered with
    "no model-20.meta; using the graph of model-10.meta" and then "the graph file ... is used
    instead of model-10.meta"; the graph file given is simply the graph."""
    import tensorflow as tf
    from tensorflow.core.protobuf import meta_graph_pb2
    model = models.dense(str(tmp_path / "steps"), True, steps=[10, 20])
    os.remove(os.path.join(model.directory, "model.ckpt-20.meta"))
    meta = meta_graph_pb2.MetaGraphDef()
    with open(os.path.join(model.directory, "model.ckpt-10.meta"), "rb") as fh:
        meta.ParseFromString(fh.read())
    tf.io.write_graph(meta.graph_def, str(tmp_path), "steps_graph.pbtxt")
    r = cli("freeze", os.path.join(model.directory, "model.ckpt-20"), "-o", str(tmp_path / "o.pb"), "--graph",
            str(tmp_path / "steps_graph.pbtxt"), "--server", srv.target)
    assert r.returncode == 0, r.stderr
    assert "no model.ckpt-20.meta" not in r.stderr and "is used instead of" not in r.stderr, r.stderr
