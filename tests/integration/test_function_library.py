"""Issue 32, finding 2: functions TensorFlow can run that no node calls.

Grappler's implementation selector runs, in place of a called function, another of
the library that declares the same ``api_implements`` and prefers the device; a
function can also be named only by an attribute, or be reached only through a TF2
SavedModel's restore function. Each hiding place holds a ``ReadFile`` of a server
file the test writes after building the upload: the server refuses each one
(INVALID_ARGUMENT, ERROR_REASON_UNSAFE_OP) naming the function and the op, and the
file's bytes are in no answer. Models whose functions are ordinary still freeze,
verify and run. The engine-level tests at the end show the second line of defence
(grappler's function rewriters off) and inspect's import, in this process, without
a sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import attacks
import models
from tffreeze import InvalidArgumentError

SECRET = b"SECRET-FN-32\n"  # 13 bytes: a run that read it would add 13 to the output


@pytest.fixture()
def secret(tmp_path):
    """A server file outside any upload; written by each test after the model is built."""
    return str(tmp_path / "server-secret.txt")


def _write_secret(path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(SECRET)


def _refused(client, directory, **kw) -> InvalidArgumentError:
    with pytest.raises(InvalidArgumentError) as err:
        client.freeze(directory, **kw)
    exc = err.value
    assert exc.code == "INVALID_ARGUMENT" and exc.reason == "ERROR_REASON_UNSAFE_OP", exc.message
    assert "ReadFile" in exc.metadata["ops"].split(",")
    assert attacks.HIDDEN in exc.message and attacks.HIDDEN in exc.metadata["nodes"], exc.message
    assert "ReadFile (__inference_%s" % attacks.HIDDEN in exc.message
    _no_secret(exc.message, *exc.metadata.values())
    assert len(exc.message) < 2000
    return exc


def _no_secret(*answers) -> None:
    for answer in answers:
        data = answer if isinstance(answer, bytes) else str(answer).encode()
        assert SECRET.strip() not in data and b"SECRET-FN" not in data


# -- hiding places ------------------------------------------------------------------------
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "plain"])
def test_uncalled_member_of_an_api_implements_family(client, secret, tmp_path, verify):
    """A TF1 meta graph: the output calls a function declaring api_implements (preferring a
    GPU); another of the family, preferring the CPU, reads the file and is called by no
    node. verify used to run the original graph, and the session ran that one instead."""
    directory = attacks.uncalled_implementation(str(tmp_path / "model"), secret)
    _write_secret(secret)
    exc = _refused(client, directory, verify=verify)
    assert "whether or not a node calls it" in exc.message
    report = client.inspect(directory)
    assert any("would be refused" in w and attacks.HIDDEN in w for w in report.warnings)
    _no_secret(report.SerializeToString())


@pytest.mark.parametrize("family", [True, False], ids=["same-api-implements", "saver-only"])
def test_function_reached_only_through_the_restore_function(client, secret, tmp_path, family):
    """A TF2 SavedModel whose restore function (the saver's, which TensorFlow's loader does
    not call) calls a function reading the file; with ``family`` that function also
    declares the api_implements of the function the signature calls (TensorFlow ran it in
    its place while loading). A plain freeze refuses it before TensorFlow loads anything."""
    directory = attacks.restore_only_function(str(tmp_path / "sm"), secret, family=family)
    _write_secret(secret)
    exc = _refused(client, directory)
    assert "SavedModel" in exc.message
    if not family:
        assert "save/restore" in exc.message
    with pytest.raises(InvalidArgumentError) as err:
        client.inspect(directory)  # inspect loads a TF2 SavedModel too: the same check first
    assert err.value.reason == "ERROR_REASON_UNSAFE_OP"
    _no_secret(err.value.message)


@pytest.mark.parametrize("build", [attacks.attribute_named_function, attacks.nested_list_function],
                         ids=["func-attribute", "nested-in-list"])
@pytest.mark.parametrize("verify", [True, False], ids=["verify", "plain"])
def test_function_named_only_by_an_attribute(client, secret, tmp_path, build, verify):
    """The output node (a Mul, no call op) names the function reading the file only in an
    attribute: a func value, or an attribute of an entry of a list of functions."""
    directory = build(str(tmp_path / "model"), secret)
    _write_secret(secret)
    _refused(client, directory, verify=verify)


# -- ordinary models with functions still freeze ---------------------------------------------
def _verified(outcome) -> None:
    checks = outcome.manifest["verification"]
    assert checks and all(c.get("max_abs_diff", 0) == 0 for c in checks), checks


def test_tf2_saved_model_with_functions_and_control_flow_freezes_and_verifies(client, tmp_path):
    """tf.function methods with a while loop (autograph) and dict outputs; the saver's own
    functions (SaveV2, RestoreV2, MergeV2Checkpoints) do not refuse it."""
    model = models.saved_model_v2(str(tmp_path / "sm2"))
    outcome = client.freeze(model.directory, verify=True)
    sig = outcome.manifest["signature"]
    _verified(outcome)
    feeds = {sig["inputs"][a]["name"]: v for a, v in model.feeds.items()}
    fetches = [sig["outputs"][a]["name"] for a in model.expected]
    for name, got in zip(model.expected, models.run_frozen(outcome.graph_bytes, feeds, fetches)):
        np.testing.assert_allclose(got, model.expected[name], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("cf_v1", [False, True], ids=["while-if", "switch-merge"])
def test_tf1_graph_with_control_flow_freezes_and_verifies(client, tmp_path, cf_v1):
    model = models.loop_and_cond(str(tmp_path / "m"), True, cf_v1)
    outcome = client.freeze(model.directory, verify=True)
    _verified(outcome)
    fetches = list(model.expected)
    for name, got in zip(fetches, models.run_frozen(outcome.graph_bytes, model.feeds, fetches)):
        np.testing.assert_allclose(got, model.expected[name], rtol=1e-6, atol=1e-6)


def test_tf1_graph_with_a_safe_api_implements_family_freezes_and_verifies(client, tmp_path):
    """As Keras's LSTM has (a CPU and a GPU implementation): both members are checked and
    safe; the frozen graph computes what the called one computes."""
    directory = attacks.legit_family(str(tmp_path / "m"))
    outcome = client.freeze(directory, outputs=["out"], verify=True)
    _verified(outcome)
    x = np.array([1.0, 2.0], np.float32)
    (y,) = models.run_frozen(outcome.graph_bytes, {"x:0": x}, ["out:0"])
    np.testing.assert_allclose(y, x * 2.0 * 3.0 + 1.0)


# -- engine level, in this process (no sandbox): the second line of defence -----------------
_SWAP_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    sys.path.insert(0, %(tests)r)
    import numpy as np
    import tensorflow as tf
    import attacks
    from tffreeze_server.core import oppolicy, verify
    tf1 = tf.compat.v1
    secret, mode = sys.argv[1], sys.argv[2]
    called, hidden = attacks._family(secret)
    x = np.array([1.0, 2.0], np.float32)
    if mode == "eager":
        from tensorflow.python.eager import context
        context.context().add_function_def(hidden.function_def)
        run = tf.function(lambda v: tf.identity(tf.identity(called(v)) * 2.0) + 1.0,
                          input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
        default = run(tf.constant(x)).numpy()
        oppolicy.lock_eager()
        locked = run(tf.constant(x)).numpy()
    else:
        graph = tf.Graph()
        with graph.as_default():
            hidden.add_to_graph(graph)
            body = lambda v: tf.identity(tf.identity(called(v)) * 2.0) + 1.0
            if mode == "nested":  # the call sits in a function of its own, never inlined
                body = tf.function(body, autograph=False, experimental_attributes={"_noinline": True})
            tf.identity(body(tf1.placeholder(tf.float32, [None], name="x")), name="out")
        graph_def = graph.as_graph_def()
        fresh = tf.Graph()
        with fresh.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        with tf1.Session(graph=fresh) as sess:
            default = sess.run("out:0", {"x:0": x})
        locked = verify.run_graph_def(graph_def, {"x:0": x}, ["out:0"])[0]
    print("RESULT", list(default), list(locked))
""")


@pytest.mark.parametrize("mode", ["session", "nested", "eager"])
def test_implementation_selector_is_off_where_the_server_runs_graphs(tmp_path, secret, mode):
    """Without the op check: TensorFlow's defaults run the hidden family member (the
    output grows by the file's length); the server's session config, the call configs it
    rewrites (a nested, never-inlined call runs under its own config_proto) and its eager
    options run the function the node names. The output is x * 2 + 1 then."""
    _write_secret(secret)
    script = tmp_path / "swap.py"
    script.write_text(_SWAP_SCRIPT % {"tests": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))})
    proc = subprocess.run([sys.executable, str(script), secret, mode], capture_output=True, text=True, timeout=300)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT")), None)
    assert line is not None, proc.stderr[-3000:]
    default, locked = eval(line[len("RESULT"):].replace("] [", "], ["))  # two lists of floats
    assert default == [2 * (1.0 + len(SECRET)) + 1, 2 * (2.0 + len(SECRET)) + 1]  # TensorFlow swaps by default
    assert locked == [3.0, 5.0]


def test_op_named_by_a_function_attribute_is_checked():
    """A function-valued attribute naming no library function but an op (TensorFlow runs a
    one-op function for it where it can) is checked as that op, at any depth."""
    from tensorflow.core.framework import graph_pb2

    from tffreeze_server.core import oppolicy

    graph = graph_pb2.GraphDef()
    call = graph.node.add(name="call", op="PartitionedCall")
    call.attr["f"].func.name = "ReadFile"
    other = graph.node.add(name="other", op="NoOp")
    other.attr["_fns"].list.func.add(name="Identity").attr["g"].func.name = "WriteFile"
    printer = graph.node.add(name="printer", op="NoOp")
    printer.attr["_p"].func.name = "PrintV2"
    printer.attr["_p"].func.attr["output_stream"].s = b"file:///tmp/x"
    found = dict(oppolicy.unsafe_nodes(graph))
    assert found == {"call (attribute f)": "ReadFile", "other (attribute _fns[0].g)": "WriteFile",
                     "printer (attribute _p)": "PrintV2 to file:///tmp/x"}


def test_tf2_loader_gets_no_saver_functions(tmp_path):
    """The SavedModel TensorFlow loads is the checked copy: no saver nodes or functions
    (no SaveV2 / RestoreV2 / MergeV2Checkpoints anywhere), every call's config with the
    implementation selector off, every function of it checked."""
    from tensorflow.core.protobuf import rewriter_config_pb2, saved_model_pb2

    from tffreeze_server.core import loaders, oppolicy
    from tffreeze_server.core.spec import FreezeSpec

    model = models.saved_model_v2(str(tmp_path / "sm2"))
    original = saved_model_pb2.SavedModel()
    with open(os.path.join(model.directory, "saved_model.pb"), "rb") as fh:
        original.ParseFromString(fh.read())
    ops = {n.op for f in original.meta_graphs[0].graph_def.library.function for n in f.node_def}
    assert {"SaveV2", "RestoreV2"} <= ops
    copy = saved_model_pb2.SavedModel.FromString(loaders._sanitized_saved_model(original.meta_graphs[0],
                                                                                FreezeSpec()))
    graph = copy.meta_graphs[0].graph_def
    ops = {n.op for f in graph.library.function for n in f.node_def} | {n.op for n in graph.node}
    assert not ops & oppolicy.SAVER_OPS and not copy.meta_graphs[0].HasField("saver_def")
    assert oppolicy.unsafe_nodes(graph) == []
    configs = [n.attr["config_proto"].s for f in graph.library.function for n in f.node_def
               if "config_proto" in n.attr]
    assert configs
    from tensorflow.core.protobuf import config_pb2

    for data in configs:
        rw = config_pb2.ConfigProto.FromString(data).graph_options.rewrite_options
        assert rw.implementation_selector == rewriter_config_pb2.RewriterConfig.OFF


def test_inspect_never_imports_what_the_op_check_refuses(tmp_path, secret):
    """Inspect describes outputs with the shapes TensorFlow infers when it imports the
    bound graph; a graph the op check refuses is not imported (shape inference would
    evaluate its ReadFile): the output's shape is not the file's first bytes."""
    from tffreeze_server.core import engine
    from tffreeze_server.core.spec import FreezeSpec

    directory = attacks.shape_leak(str(tmp_path / "model"), secret)
    _write_secret(secret)
    report = engine.inspect(directory, FreezeSpec())
    assert any("would be refused" in w for w in report.warnings)
    shapes = [[int(v.number_value) for v in t.shape.values] for t in report.outputs if t.HasField("shape")]
    assert not any(s[:4] == list(SECRET[:4]) for s in shapes), shapes
