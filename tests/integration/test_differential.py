"""Differential test: tffreeze against TensorFlow's own freeze_graph over TensorFlow's public
API families (issue 33).

Each case of ``tests/families.py`` (tf.math, tf.linalg, tf.nn, tf.image, depth_to_space,
crop_and_resize, NMS, tf.signal, tf.sparse, tf.strings, tf.random, tf.lookup, control flow v1
and v2, TensorArrays, scatter/gather/segment, CTC decoders, parse_example, feature columns) is a
small graph trained two steps and saved with a Saver. It is frozen twice, with the same output
names (out0, out1, ...):

* the reference: ``tensorflow.python.tools.freeze_graph.freeze_graph`` given the .meta
  (``input_meta_graph``), the checkpoint prefix and the output node names, in this process.
  A table a graph keeps is initialised by an op freeze_graph is also asked to keep
  (``init_all_tables``), which is run before the outputs. freeze_graph's graph of a v2 While
  or If that takes a resource variable keeps stale ``_output_shapes`` hints (the handle became a
  constant of the value's rank) that import rejects; those hints are dropped to run it (shape
  hints only: no node or value changes);
* tffreeze: the real server (the session's, started on port 0 by conftest), through the
  Python client, given the same outputs and the placeholders as inputs.

Both frozen graphs are run in TensorFlow on the same feeds and their outputs compared: exactly
for integers, booleans and strings, within 1e-5 for floats. Where freeze_graph fails, tffreeze
may refuse too (not the cases in ``CHECKPOINT_ONLY``); a graph it does freeze must give the
checkpoint's outputs (the saved meta graph restored in a session). Whenever freeze_graph succeeds and
its graph runs, tffreeze must succeed and give the same values, unless its security policy
refuses the graph by design: those cases are in ``REFUSED`` with the op and the reason, and are
asserted to be refused with that reason (an entry that stops being refused fails the test).
Cases still failing for a bug are in ``OPEN``, marked xfail(strict=True): each flips to a
failure when it is fixed, so the table cannot go stale.

``test_op_coverage`` counts the op types of tffreeze's frozen graphs (top level and every
function of their libraries) over all cases, intersected with the op allowlist
(server/tffreeze_server/data/safe_ops.txt), and holds it above a measured floor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import pytest

import families
from tffreeze import FreezeClient, TffreezeError

# Cases where tffreeze fails and freeze_graph succeeds, for a bug not fixed yet: case -> what
# fails. Each is xfail(strict=True): fixing the bug turns it into a failure until removed here.
OPEN: Dict[str, str] = {}

# Cases where freeze_graph's graph is wrong and tffreeze must freeze and give the checkpoint's outputs
# (the saved meta graph restored in a session): case -> why freeze_graph's is wrong.
CHECKPOINT_ONLY: Dict[str, str] = {
    "lookup_mutable_table_saved": (
        "freeze_graph keeps the MutableHashTable but not its contents (they are restored by the saver, which it "
        "drops): its table is empty and every lookup gives the default. tffreeze reads the keys and values from "
        "the checkpoint (MutableHashTable-keys/-values) into constants"),
}

# Graphs tffreeze refuses by design (security policy): case -> (op, ErrorReason, why).
REFUSED: Dict[str, tuple] = {
    "lookup_vocabulary_file": (
        "InitializeTableFromTextFileV2", "ERROR_REASON_GRAPH_DOES_NOT_RUN",
        "the table is filled from a file the graph names: the server never reads files a graph names (the op is "
        "not in safe_ops.txt), so it cannot carry the table initialised; freeze_graph's graph works only where "
        "that file exists at run time"),
    "py_function_preprocessing": (
        "EagerPyFunc", "ERROR_REASON_UNSAFE_OP",
        "runs Python code of the training process (not on safe_ops.txt); freeze_graph's graph runs only in the "
        "process that built it, where the callback is registered. The refusal names EagerPyFunc:0 as the input "
        "to cut at"),
    "read_file_in_the_graph": (
        "ReadFile", "ERROR_REASON_UNSAFE_OP",
        "reads a file the graph names (not on safe_ops.txt): TensorFlow would read it on the server at import"),
}

# Allowlisted ops the cases exercise: 310 of 952 measured with TensorFlow 2.21 when the cases were
# written; the floor leaves 5 for a rewrite that legitimately changes an op. Raise it with new cases.
COVERAGE_FLOOR = 305

FLOAT_TOLERANCE = dict(rtol=1e-5, atol=1e-5)


@dataclass
class Result:
    built: families.Built
    reference: Optional[bytes] = None  # freeze_graph's GraphDef
    reference_error: Optional[str] = None  # why freeze_graph (or its graph) failed
    reference_values: List[np.ndarray] = field(default_factory=list)
    reference_note: str = ""  # what was done to freeze_graph's graph to run it
    restored_values: List[np.ndarray] = field(default_factory=list)  # the checkpoint in its own graph
    restored_error: Optional[str] = None  # why the checkpoint does not run in its own graph
    graph: Optional[bytes] = None  # tffreeze's GraphDef
    error: Optional[TffreezeError] = None
    manifest: dict = field(default_factory=dict)
    values: List[np.ndarray] = field(default_factory=list)
    run_error: Optional[str] = None  # tffreeze's graph failed to run


def _node(name: str) -> str:
    return name.split(":")[0]


def freeze_with_tensorflow(built: families.Built, output_path: str) -> bytes:
    import tensorflow as tf
    from tensorflow.python.tools import freeze_graph

    with tf.Graph().as_default():
        freeze_graph.freeze_graph(
            input_graph=None, input_saver="", input_binary=True, input_checkpoint=built.prefix,
            output_node_names=",".join([_node(o) for o in built.outputs] + built.init), restore_op_name="",
            filename_tensor_name="", output_graph=output_path, clear_devices=True, initializer_nodes="",
            input_meta_graph=built.prefix + ".meta")
    with open(output_path, "rb") as fh:
        return fh.read()


def without_output_shapes(graph_bytes: bytes) -> bytes:
    """The GraphDef without its nodes' ``_output_shapes`` attributes (shape hints only)."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    for node in graph_def.node:
        node.attr.pop("_output_shapes", None)
    return graph_def.SerializeToString()


def run_checkpoint(built: families.Built) -> List[np.ndarray]:
    """The outputs of the saved meta graph with the checkpoint restored, in a fresh session."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        saver = tf1.train.import_meta_graph(built.prefix + ".meta", clear_devices=True)
        with tf1.Session(graph=graph) as sess:
            saver.restore(sess, built.prefix)
            if built.init:
                sess.run(built.init)
            return sess.run(built.outputs, built.feeds)


def run_graph(graph_bytes: bytes, feeds, fetches, init=()) -> List[np.ndarray]:
    """Import a frozen GraphDef into a fresh graph, run ``init`` (those of its nodes that
    exist), then fetch ``fetches`` fed with the ``feeds`` of placeholders it has."""
    import tensorflow as tf

    tf1 = tf.compat.v1
    graph_def = tf1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    present = {n.name for n in graph_def.node}
    feed_dict = {k: v for k, v in feeds.items() if _node(k) in present}
    with tf1.Session(graph=graph) as sess:
        targets = [i for i in init if i in present]
        if targets:
            sess.run(targets)
        return sess.run(list(fetches), feed_dict)


def graph_op_types(graph_bytes: bytes) -> set:
    """Op types of a GraphDef's nodes and of every function in its library."""
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph_bytes)
    ops = {n.op for n in graph_def.node}
    for function in graph_def.library.function:
        ops.update(n.op for n in function.node_def)
    return ops


def _same(want, got) -> bool:
    want, got = np.asarray(want), np.asarray(got)
    if want.shape != got.shape or want.dtype != got.dtype:
        return False
    if want.dtype.kind in "fc":
        return bool(np.allclose(got, want, equal_nan=True, **FLOAT_TOLERANCE))
    return bool(np.array_equal(got, want))


def _first_line(exc: BaseException) -> str:
    """The exception's first telling line (TensorFlow's start 'Graph execution error:')."""
    lines = [l.strip() for l in str(exc).splitlines() if l.strip()]
    telling = [l for l in lines if not l.endswith(":") and not l.startswith(("Detected at", "File ", "Node:"))]
    return "%s: %s" % (type(exc).__name__, (telling or lines or [""])[0][:400])


class Differential:
    """Builds, freezes (both ways) and runs each case once per module."""

    def __init__(self, client: FreezeClient, root: str):
        self.client = client
        self.root = root
        self.results: Dict[str, Result] = {}

    def get(self, name: str) -> Result:
        if name not in self.results:
            self.results[name] = self._run(name)
        return self.results[name]

    def _run(self, name: str) -> Result:
        folder = os.path.join(self.root, name)
        built = families.build(name, os.path.join(folder, "ckpt"))
        result = Result(built)
        try:
            result.reference = freeze_with_tensorflow(built, os.path.join(folder, "reference.pb"))
            try:
                result.reference_values = run_graph(result.reference, built.feeds, built.outputs, built.init)
            except ValueError as exc:
                if "_output_shapes" not in str(exc):
                    raise
                # freeze_graph turns a resource variable a v2 While/If takes into a constant of
                # another rank but keeps the node's old shape hints, which import then rejects.
                result.reference = without_output_shapes(result.reference)
                result.reference_values = run_graph(result.reference, built.feeds, built.outputs, built.init)
                result.reference_note = "freeze_graph's stale _output_shapes dropped"
        except Exception as exc:  # freeze_graph cannot freeze it, or its graph does not run
            result.reference_error = _first_line(exc)
        try:
            result.restored_values = run_checkpoint(built)
        except Exception as exc:  # a py_func whose callback went with the graph that built it
            result.restored_error = _first_line(exc)
        if result.reference_error is None and result.restored_error is None:
            wrong = [o for o, want, got in zip(built.outputs, result.restored_values, result.reference_values)
                     if not _same(want, got)]
            if wrong:
                result.reference_error = "its graph gives other values than the checkpoint: %s" % ", ".join(wrong)
        try:
            outcome = self.client.freeze(built.directory, outputs=built.outputs, inputs=built.inputs)
        except TffreezeError as exc:
            result.error = exc
            return result
        result.graph, result.manifest = outcome.graph_bytes, outcome.manifest
        try:
            result.values = run_graph(result.graph, built.feeds, built.outputs)
        except Exception as exc:
            result.run_error = _first_line(exc)
        return result


@pytest.fixture(scope="module")
def differential(server, tmp_path_factory):
    with FreezeClient(server.target, timeout=300) as client:
        yield Differential(client, str(tmp_path_factory.mktemp("differential")))


def _param(name: str):
    marks = [pytest.mark.xfail(strict=True, reason=OPEN[name])] if name in OPEN else []
    return pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in families.CASES])
def test_same_outputs_as_freeze_graph(differential, name):
    r = differential.get(name)
    built = r.built
    if name in REFUSED:
        op, reason, why = REFUSED[name]
        assert r.error is not None, "%s is listed as refused (%s: %s) but tffreeze froze it" % (name, op, why)
        assert r.error.reason == reason, "%s: refused with %s, not %s: %s" % (name, r.error.reason, reason, r.error)
        assert op in r.error.message, "%s: the refusal does not name %s: %s" % (name, op, r.error.message)
        return
    if r.reference_error is not None:
        # freeze_graph cannot freeze it: tffreeze may refuse too, but what it freezes must run
        # and give the checkpoint's outputs (restored into the saved graph).
        print("%s: freeze_graph failed (%s); tffreeze %s" % (
            name, r.reference_error, "froze it" if r.error is None else "refused: %s" % r.error.reason))
        if r.error is not None:
            assert name not in CHECKPOINT_ONLY, "%s: tffreeze refused (%s: %s), but it must freeze it: %s" % (
                name, r.error.reason, r.error, CHECKPOINT_ONLY[name])
            return
        assert r.restored_error is None, "%s: tffreeze froze it, but neither freeze_graph's graph nor the checkpoint " \
            "in its own graph runs (%s), so it cannot be checked" % (name, r.restored_error)
        expected = r.restored_values
    else:
        assert name not in CHECKPOINT_ONLY, "%s: freeze_graph's graph gives the checkpoint's outputs now" % name
        assert r.error is None, "freeze_graph froze %s, tffreeze did not: %s (%s)" % (name, r.error.reason, r.error)
        expected = r.reference_values
    assert r.run_error is None, "tffreeze's frozen graph of %s does not run: %s" % (name, r.run_error)
    for output, want, got in zip(built.outputs, expected, r.values):
        want, got = np.asarray(want), np.asarray(got)
        assert want.shape == got.shape and want.dtype == got.dtype, "%s %s: %s %s vs %s %s" % (
            name, output, want.dtype, want.shape, got.dtype, got.shape)
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(got, want, err_msg="%s %s" % (name, output), **FLOAT_TOLERANCE)
        else:
            np.testing.assert_array_equal(got, want, err_msg="%s %s" % (name, output))


def test_batch_norm_in_training_mode_is_frozen_when_named_and_refused_when_guessed(differential):
    """Named outputs that need a batch norm in training mode get it, with a warning (as
    freeze_graph does); outputs tffreeze resolves itself are still refused there."""
    r = differential.get("nn_batch_norm_in_training_mode")
    assert r.error is None, r.error
    assert any(w.startswith("batch norm in training mode") for w in r.manifest["warnings"]), r.manifest["warnings"]
    with pytest.raises(TffreezeError) as err:
        differential.client.freeze(r.built.directory)
    assert err.value.reason == "ERROR_REASON_TRAINING_OP_NEEDED" and "batch norm in training mode" in err.value.message


def test_op_coverage(differential, capsys):
    """How many allowlisted ops the frozen graphs of all cases exercise; never fewer than the
    floor measured when the cases were written."""
    from tffreeze_server.core.oppolicy import safe_ops

    allowed = safe_ops()
    exercised = set()
    for name in families.CASES:
        r = differential.get(name)
        if r.graph is not None:
            exercised |= graph_op_types(r.graph)
    covered = exercised & allowed
    line = "op coverage: %d of %d allowlisted ops exercised (%d families, %d cases)" % (
        len(covered), len(allowed), len({c.family for c in families.CASES.values()}), len(families.CASES))
    with capsys.disabled():  # shown in every run, passing or not
        print("\n" + line)
    assert len(covered) >= COVERAGE_FLOOR, line
