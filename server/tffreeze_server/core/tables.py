"""Lookup tables in a frozen graph.

A hash table (``HashTableV2``) is filled by an initializer op that the training
script runs once (``tables_initializer``); a frozen graph handed to another
runtime would fail with "Table not initialized". A table whose initializer takes
its keys and values from constants is rewritten into plain ops that need no
initialisation and load in every runtime (TensorFlow 1.15 included): the keys,
sorted (strings by their 64-bit fingerprint, ``StringToHashBucketFast``), and the
values become constants (keys and values computed from constants alone, as with
``tf.range``, are evaluated: ``constvalues``); a lookup is a binary search (``LowerBound``), a check
that the key found is the one asked for, and the value or the default
(``SelectV2``). A table filled any other way (from a file, by inserts) cannot be
frozen: the outputs that need it are refused, saying so.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np
from tensorflow.python.framework import dtypes as tf_dtypes
from tensorflow.python.framework import tensor_util

from .constvalues import Evaluator
from .errors import FailedPrecondition
from .graph import node_of

TABLE_OPS = {"HashTableV2", "HashTable", "MutableHashTableV2", "MutableHashTable", "MutableHashTableOfTensorsV2",
             "MutableDenseHashTableV2", "AnonymousHashTable", "AnonymousMutableHashTable"}
_FIND_OPS = {"LookupTableFindV2", "LookupTableFind"}
_SIZE_OPS = {"LookupTableSizeV2", "LookupTableSize"}
_INIT_OPS = {"InitializeTableV2", "InitializeTable", "LookupTableImportV2", "LookupTableImport"}  # (table, keys, values)
_BUCKETS = (1 << 63) - 1  # StringToHashBucketFast with this many buckets is the fingerprint itself
_INT64, _INT32, _STRING = 9, 3, 7  # DataType enums
_TABLE_ELEMENTS = 1 << 24  # keys or values computed for a table, at least


def _evaluator(source_graph) -> Evaluator:
    """Values of the source graph's constant sub-graphs (``constvalues``): a table's keys and
    values may be computed from constants (``tf.range``, a Cast, a Reshape), not only read off a
    Const. Bounded by this task's import-time constant limit (at 8 bytes per element)."""
    from .oppolicy import constant_limit

    limit = constant_limit()
    elements = max(_TABLE_ELEMENTS, limit // 8) if limit else _TABLE_ELEMENTS
    return Evaluator(source_graph.node, elements, 2 * elements)


def _initializers(source_graph) -> Dict[str, List]:
    """table node -> the initializer nodes that fill it, in the source (unpruned) graph."""
    out: Dict[str, List] = {}
    for node in source_graph.node:
        if node.op in _INIT_OPS or node.op.startswith("InitializeTableFrom"):
            out.setdefault(node_of(node.input[0]), []).append(node)
    return out


def _fingerprints(keys: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    return tf.strings.to_hash_bucket_fast(tf.constant(keys), _BUCKETS).numpy().astype(np.int64)


def _contents(table: str, initializers, values_of: Evaluator) -> Tuple[Optional[Tuple[np.ndarray, np.ndarray]], str]:
    """(sorted search keys, values in the same order) for a table filled from constants, else
    (None, why not)."""
    inits = initializers.get(table, [])
    if len(inits) != 1:
        return None, "it is filled %s" % ("by no initializer in the graph" if not inits else "by several initializers")
    init = inits[0]
    if init.op not in _INIT_OPS:
        return None, "its initializer %s (%s) reads a file" % (init.name, init.op)
    keys, values = values_of.value(init.input[1]), values_of.value(init.input[2])
    if keys is None or values is None:
        return None, ("its initializer %s takes keys or values that do not follow from constants alone (through "
                      "ops the server evaluates)" % init.name)
    keys, values = keys.reshape(-1), values.reshape(-1)
    if keys.size == 0 or keys.size != values.size:
        return None, "its initializer %s has %d keys and %d values" % (init.name, keys.size, values.size)
    if keys.dtype.kind in "SUO":
        search = _fingerprints(keys)
    elif keys.dtype.kind in "iu":
        search = keys.astype(np.int64)
    else:
        return None, "its keys are %s" % keys.dtype
    if len(np.unique(search)) != len(search):
        return None, "its keys are not distinct (or two of them share a fingerprint)"
    order = np.argsort(search, kind="stable")
    return (search[order], values[order]), ""


def _const(graph_def, name: str, value: np.ndarray):
    node = graph_def.node.add(name=name, op="Const")
    node.attr["dtype"].type = tensor_util.make_tensor_proto(value).dtype
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    return node


def _add(graph_def, name: str, op: str, inputs: List[str], **attrs):
    node = graph_def.node.add(name=name, op=op)
    node.input.extend(inputs)
    for key, (kind, value) in attrs.items():
        if kind == "type":
            node.attr[key].type = value
        else:
            setattr(node.attr[key], kind, value)
    return node


def _lookup(graph_def, find, search: np.ndarray, values: np.ndarray, key_dtype: int, value_dtype: int) -> None:
    """Replace the lookup node ``find`` by plain ops (the last of them keeps its name)."""
    name, query, default = find.name, find.input[1], find.input[2]
    controls = [i for i in find.input if i.startswith("^")]
    base = name + "/table"
    graph_def.node.remove(find)
    if key_dtype == _STRING:
        _add(graph_def, base + "/fingerprint", "StringToHashBucketFast", [query], num_buckets=("i", _BUCKETS))
        hashed = base + "/fingerprint"
    elif key_dtype == _INT64:
        hashed = query
    else:
        _add(graph_def, base + "/as_int64", "Cast", [query], SrcT=("type", key_dtype), DstT=("type", _INT64))
        hashed = base + "/as_int64"
    _const(graph_def, base + "/row_shape", np.array([1, -1], np.int32))
    _add(graph_def, base + "/row", "Reshape", [hashed, base + "/row_shape"], T=("type", _INT64),
         Tshape=("type", _INT32))
    _const(graph_def, base + "/sorted_keys", search.reshape(1, -1))
    _add(graph_def, base + "/position", "LowerBound", [base + "/sorted_keys", base + "/row"],
         T=("type", _INT64), out_type=("type", _INT32))
    _const(graph_def, base + "/last", np.array(len(search) - 1, np.int32))
    _add(graph_def, base + "/clipped", "Minimum", [base + "/position", base + "/last"], T=("type", _INT32))
    _const(graph_def, base + "/keys", search)
    _const(graph_def, base + "/values", values)
    _const(graph_def, base + "/axis", np.array(0, np.int32))
    _add(graph_def, base + "/found_key", "GatherV2", [base + "/keys", base + "/clipped", base + "/axis"],
         Tparams=("type", _INT64), Tindices=("type", _INT32), Taxis=("type", _INT32), batch_dims=("i", 0))
    _add(graph_def, base + "/hit", "Equal", [base + "/found_key", base + "/row"], T=("type", _INT64))
    _add(graph_def, base + "/value", "GatherV2", [base + "/values", base + "/clipped", base + "/axis"],
         Tparams=("type", value_dtype), Tindices=("type", _INT32), Taxis=("type", _INT32), batch_dims=("i", 0))
    _add(graph_def, base + "/chosen", "SelectV2", [base + "/hit", base + "/value", default], T=("type", value_dtype))
    _add(graph_def, base + "/query_shape", "Shape", [query], T=("type", key_dtype), out_type=("type", _INT32))
    _add(graph_def, name, "Reshape", [base + "/chosen", base + "/query_shape"] + controls,
         T=("type", value_dtype), Tshape=("type", _INT32))


def freeze_tables(graph_def, source_graph, warnings: List[str]) -> int:
    """Rewrite every lookup on a constant-filled table in ``graph_def`` (in place; the
    table handles are left for pruning); refuse a table the graph still needs that cannot
    be rewritten. ``source_graph``: the upload's whole graph (where initializers live).
    Returns how many tables were rewritten."""
    tables = [n for n in graph_def.node if n.op in TABLE_OPS]
    if not tables:
        return 0
    values_of = _evaluator(source_graph)
    initializers = _initializers(source_graph)
    done = 0
    for table in tables:
        users = [n for n in graph_def.node if any(node_of(i) == table.name for i in n.input)]
        contents, why = _contents(table.name, initializers, values_of)
        if contents is None or any(u.op not in _FIND_OPS | _SIZE_OPS for u in users):
            if contents is not None:
                why = "the outputs also %s it" % ", ".join(sorted({u.op for u in users} - _FIND_OPS - _SIZE_OPS))
            lookups = ["%s:0" % u.name for u in users if u.op in _FIND_OPS]
            cut = ("cut the graph after the lookup: name these tensors as inputs: %s. Each becomes a placeholder, "
                   "fed with the ids looked up" % ", ".join(lookups[:10])
                   if lookups and all(u.op in _FIND_OPS for u in users) else "cut the graph after the lookup (inputs)")
            raise FailedPrecondition(
                "the outputs need lookup table %s, and %s: a frozen graph cannot carry it initialised, so it would "
                "fail when run (\"Table not initialized\"). Build the table from constant keys and values "
                "(tf.lookup.KeyValueTensorInitializer), or %s." % (table.name, why, cut),
                "ERROR_REASON_GRAPH_DOES_NOT_RUN", table=table.name)
        search, values = contents
        key_dtype, value_dtype = table.attr["key_dtype"].type, table.attr["value_dtype"].type
        for user in users:
            if user.op in _FIND_OPS:
                _lookup(graph_def, user, search, values.astype(tf_dtypes.as_dtype(value_dtype).as_numpy_dtype),
                        key_dtype, value_dtype)
            else:
                name, controls = user.name, [i for i in user.input if i.startswith("^")]
                graph_def.node.remove(user)
                _const(graph_def, name, np.array(len(search), np.int64)).input.extend(controls)
        done += 1
        warnings.append("lookup table %s (%d entries, from constants) became constants and a sorted search: "
                        "the frozen graph needs no table initialisation" % (table.name, len(search)))
    return done


__all__ = ["freeze_tables", "TABLE_OPS"]
