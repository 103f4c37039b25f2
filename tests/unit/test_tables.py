"""core/tables.py: a lookup table whose contents follow from constants (or from the checkpoint)
is rewritten into constants wherever the handle reaches its lookups: at the top level, through
control flow v1 (Enter, Switch, Merge) and into the functions of v2 While/If/calls (issue 33).
Each graph is frozen as the engine does (prune, freeze_tables, prune, tidy), checked against the
op allowlist, and run without any table initialiser."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

from tffreeze_server.core import oppolicy, rewrite, tables  # noqa: E402
from tffreeze_server.core.errors import FailedPrecondition  # noqa: E402

tf1 = tf.compat.v1
VOCAB = ["cat", "dog", "owl", "yak"]
TOKENS = np.array([[b"cat", b"dog", b"emu"], [b"yak", b"cat", b"owl"]], dtype=object)


def _table():
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(VOCAB), tf.constant([1, 2, 3, 4], tf.int64)), -1)


def _build(body, v1=False):
    """(graph_def, output names, the outputs with the tables initialised) of ``body(tokens)``."""
    graph = tf.Graph()
    if v1:
        tf1.disable_control_flow_v2()
    try:
        with graph.as_default():
            tokens = tf1.placeholder(tf.string, [None, 3], name="tokens")
            outputs = [tf.identity(t, name="out%d" % i) for i, t in enumerate(body(tokens))]
            init = tf1.tables_initializer()
            with tf1.Session(graph=graph) as sess:
                sess.run(init)
                want = sess.run(outputs, {tokens: TOKENS})
    finally:
        if v1:
            tf1.enable_control_flow_v2()
    return graph.as_graph_def(), [o.name for o in outputs], want


def _freeze(graph_def, names, warnings=None):
    nodes = [n.split(":")[0] for n in names]
    pruned = rewrite.prune(graph_def, nodes)
    warnings = [] if warnings is None else warnings
    done = tables.freeze_tables(pruned, graph_def, warnings)
    return rewrite.tidy(rewrite.prune(pruned, nodes)), done


def _run(graph_def, names):
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(graph_def, name="")
    with tf1.Session(graph=graph) as sess:  # no initialiser run
        return sess.run(names, {"tokens:0": TOKENS})


def _lookups(graph_def):
    ops = [n.op for n in graph_def.node] + [n.op for f in graph_def.library.function for n in f.node_def]
    return [op for op in ops if op.startswith("LookupTable") or op.startswith("InitializeTable")]


def _frozen_matches(body, v1=False):
    graph_def, names, want = _build(body, v1)
    warnings = []
    frozen, done = _freeze(graph_def, names, warnings)
    assert done == 1 and any("hash_table (4 entries, from constants)" in w for w in warnings), warnings
    assert _lookups(frozen) == []
    assert oppolicy.unsafe_nodes(frozen) == []  # the function copies pass the allowlist too
    for name, w, g in zip(names, want, _run(frozen, names)):
        np.testing.assert_array_equal(g, w, err_msg=name)
    return frozen, warnings


def test_a_lookup_at_the_top_level():
    _frozen_matches(lambda tokens: [_table().lookup(tokens)])


def test_a_lookup_inside_a_v1_while_loop_through_enter():
    def body(tokens):
        table = _table()

        def step(i, acc):
            return i + 1, acc + tf.reduce_sum(table.lookup(tokens[i]))

        return [tf1.while_loop(lambda i, acc: i < 2, step, [tf.constant(0), tf.constant(0, tf.int64)])[1]]

    frozen, _ = _frozen_matches(body, v1=True)
    assert "Enter" in {n.op for n in frozen.node}
    keys = [n for n in frozen.node if n.name.endswith("/table/keys")]
    assert keys and all(k.input and k.input[0].startswith("^") for k in keys)  # in the loop's frame


def test_a_lookup_inside_a_v1_cond_through_switch():
    def body(tokens):
        table = _table()
        return [tf.cond(tf.size(tokens) > 3, lambda: table.lookup(tokens), lambda: tf.zeros_like(tokens, tf.int64))]

    frozen, _ = _frozen_matches(body, v1=True)
    assert "Switch" in {n.op for n in frozen.node}


def test_lookups_inside_v2_while_and_if_functions():
    def body(tokens):
        table = _table()

        def step(i, acc):
            return i + 1, acc + tf.reduce_sum(table.lookup(tokens[i]))

        loop = tf.while_loop(lambda i, acc: i < 2, step, [tf.constant(0), tf.constant(0, tf.int64)])[1]
        branch = tf.cond(tf.size(tokens) > 3, lambda: table.lookup(tokens[0]), lambda: tf.zeros([3], tf.int64))
        return [loop, branch]

    frozen, warnings = _frozen_matches(body)
    assert {"While", "If"} <= {n.op for n in frozen.node}
    assert any("(2 lookup(s), 2 of them inside functions, rewritten in 2 function copies" in w for w in warnings), warnings


def test_map_fn_and_a_cond_nested_in_a_loop():
    def body(tokens):
        table = _table()
        ids = tf.map_fn(table.lookup, tokens, fn_output_signature=tf.int64)

        def step(i, acc):
            found = tf.cond(i > 0, lambda: table.lookup(tokens[i]), lambda: tf.zeros([3], tf.int64))
            return i + 1, acc + found

        nested = tf.while_loop(lambda i, acc: i < 2, step, [tf.constant(0), tf.zeros([3], tf.int64)])[1]
        return [ids, nested, table.size()]

    frozen, _ = _frozen_matches(body)
    names = [f.signature.name for f in frozen.library.function]
    assert sum("frozen_tables" in n for n in names) == 3, names  # map_fn's body, the loop's body, its cond


def test_a_function_shared_by_two_calls_is_copied_once():
    def body(tokens):
        table = _table()
        branch = lambda: table.lookup(tokens[0])  # noqa: E731
        first = tf.cond(tf.size(tokens) > 3, branch, lambda: tf.zeros([3], tf.int64))
        return [first, tf.cond(tf.size(tokens) > 4, branch, lambda: tf.zeros([3], tf.int64))]

    _frozen_matches(body)


def test_a_handle_used_otherwise_is_refused_with_a_verb():
    """An op other than a lookup on the handle: the refusal says what the outputs do with it."""
    def body(tokens):
        table = _table()
        keys, _ = tf.raw_ops.LookupTableExportV2(table_handle=table.resource_handle, Tkeys=tf.string,
                                                 Tvalues=tf.int64)
        return [table.lookup(tokens), keys]

    graph_def, names, _ = _build(body)
    with pytest.raises(FailedPrecondition) as err:
        _freeze(graph_def, names)
    assert err.value.reason == "ERROR_REASON_GRAPH_DOES_NOT_RUN"
    assert "and the outputs also use it in LookupTableExportV2 (node LookupTableExportV2)" in err.value.message


def test_a_table_filled_by_inserts_is_refused_saying_so():
    def body(tokens):
        table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0)
        with tf.control_dependencies([table.insert(tf.constant(["cat"]), tf.constant([7], tf.int64))]):
            return [table.lookup(tokens)]

    graph_def, names, _ = _build(body)
    with pytest.raises(FailedPrecondition) as err:
        _freeze(graph_def, names)
    assert ("and it is filled by no initializer in the graph, and the outputs also use it in LookupTableInsertV2 "
            "(node MutableHashTable_lookup_table_insert/LookupTableInsertV2)") in err.value.message


def test_a_computed_table_over_the_cap_is_refused_as_too_large(monkeypatch):
    """Not "does not follow from constants": it does; it is too large, and the message says
    the limit and the flag that raises it."""
    monkeypatch.setattr(tables, "_TABLE_ELEMENTS", 100)
    monkeypatch.setattr(oppolicy, "_constant_limit", [0])

    def body(tokens):
        keys = tf.strings.as_string(tf.range(1000, dtype=tf.int64))
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, tf.range(1000, dtype=tf.int64)),
                                          -1)
        return [table.lookup(tokens)]

    def ranged(tokens):
        table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.range(1000, dtype=tf.int64), tf.range(1000, dtype=tf.int64) * 2), -1)
        return [table.lookup(tf.cast(tf.strings.length(tokens), tf.int64))]

    graph_def, names, _ = _build(ranged)
    with pytest.raises(FailedPrecondition) as err:
        _freeze(graph_def, names)
    message = err.value.message
    assert "it is too large: its initializer key_value_init/LookupTableImportV2 computes 1000 keys" in message
    assert "over the 100 elements" in message and "--task-memory-bytes of at least 32000" in message
    assert "do not follow from constants" not in message
    # AsString is no op the server evaluates: that one still does not follow from constants
    graph_def, names, _ = _build(body)
    with pytest.raises(FailedPrecondition) as err:
        _freeze(graph_def, names)
    assert "do not follow from constants" in err.value.message and "too large" not in err.value.message


def test_a_mutable_table_is_frozen_from_the_checkpoint(tmp_path):
    """The saver restores a MutableHashTable's keys and values (<table>-keys, -values): they
    become constants, so the frozen table is the checkpoint's (freeze_graph's would be empty)."""
    graph = tf.Graph()
    with graph.as_default():
        tokens = tf1.placeholder(tf.string, [None, 3], name="tokens")
        table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0)
        fill = table.insert(tf.constant(["cat", "owl"]), tf.constant([5, 9], tf.int64))
        out = tf.identity(table.lookup(tokens), name="out0")
        saver = tf1.train.Saver()
        with tf1.Session(graph=graph) as sess:
            sess.run(fill)
            want = sess.run(out, {tokens: TOKENS})
            prefix = saver.save(sess, str(tmp_path / "model"))
    graph_def = graph.as_graph_def()
    pruned = rewrite.prune(graph_def, ["out0"])
    with pytest.raises(FailedPrecondition) as err:  # without the checkpoint
        tables.freeze_tables(pruned, graph_def, [])
    assert "restored from a checkpoint (MutableHashTable-keys, MutableHashTable-values)" in err.value.message
    warnings = []
    assert tables.freeze_tables(pruned, graph_def, warnings, tf.train.load_checkpoint(prefix)) == 1
    assert "from the checkpoint's MutableHashTable-keys and MutableHashTable-values" in warnings[0]
    frozen = rewrite.prune(pruned, ["out0"])
    assert _lookups(frozen) == []
    np.testing.assert_array_equal(_run(frozen, ["out0:0"])[0], want)
    np.testing.assert_array_equal(want, [[5, 0, 0], [0, 5, 9]])


def test_a_lookup_inside_a_tf_function_call():
    """A tf.function captures the handle: StatefulPartitionedCall passes it as an argument."""
    def body(tokens):
        table = _table()

        @tf.function
        def ids(t):
            return table.lookup(t) * 2

        return [ids(tokens)]

    frozen, _ = _frozen_matches(body)
    assert {"StatefulPartitionedCall", "PartitionedCall"} & {n.op for n in frozen.node}


def test_a_function_returning_the_handle_is_refused():
    """A lookup on a handle a function returns is not followed: refused, saying so (never a
    frozen graph whose lookup fails with "Table not initialized")."""
    def body(tokens):
        table = _table()

        @tf.function
        def handle():
            return tf.identity(table.resource_handle)

        return [tf.raw_ops.LookupTableFindV2(table_handle=handle(), keys=tokens,
                                             default_value=tf.constant(-1, tf.int64))]

    graph_def, names, _ = _build(body)
    with pytest.raises(FailedPrecondition) as err:
        _freeze(graph_def, names)
    assert "and the outputs also return it from function __inference_handle_" in err.value.message
