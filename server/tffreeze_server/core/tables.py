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
(``SelectV2``). A ``MutableHashTable`` the saver restores (its keys and values are in the
checkpoint, ``<table>-keys`` / ``<table>-values``) is rewritten the same way from the checkpoint's
contents.

The lookups are rewritten wherever the handle reaches them: through ``Identity`` and control
flow v1 (``Enter``, ``Switch``, ``Merge``, ``NextIteration``, ``Exit``: the constants of a lookup
inside a frame take a control input from its query, so they are in its frame), and into the
functions of v2 control flow and calls (``While``, ``If``, ``Case``, ``PartitionedCall``,
``StatefulPartitionedCall``): the function that gets the handle as an argument is copied into the
library with its lookups rewritten, and the call names the copy (the handle is still passed, unused:
the frozen graph needs no table initialisation). A table filled any other way (from a file, by
inserts), or a handle used otherwise, cannot be frozen: the outputs that need it are refused,
saying so.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set, Tuple

import numpy as np
from tensorflow.core.framework import function_pb2
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
_RESTORED_OPS = {"MutableHashTableV2", "MutableHashTable"}  # saved as <name>-keys, <name>-values
_RESTORE_OPS = {"RestoreV2", "Restore"}
_BUCKETS = (1 << 63) - 1  # StringToHashBucketFast with this many buckets is the fingerprint itself
_INT64, _INT32, _STRING = 9, 3, 7  # DataType enums
_TABLE_ELEMENTS = 1 << 24  # keys or values computed for a table, at least
# Ops a handle goes through unchanged: (op -> its outputs that carry it, as (output arg, flat index)).
_OUT = [("output", 0)]
_PASS = {"Identity": _OUT, "RefIdentity": _OUT, "Snapshot": _OUT}
_V1 = {"Enter": _OUT, "RefEnter": _OUT, "Exit": _OUT, "RefExit": _OUT, "NextIteration": _OUT,
       "RefNextIteration": _OUT, "Merge": _OUT, "RefMerge": _OUT,
       "Switch": [("output_false", 0), ("output_true", 1)], "RefSwitch": [("output_false", 0), ("output_true", 1)]}
_WHILE = {"While", "StatelessWhile"}
_IF = {"If", "StatelessIf"}
_CASE = {"Case", "StatelessCase"}
_CALL = {"PartitionedCall", "StatefulPartitionedCall"}
_SOURCE_ATTR = "_tffreeze_table_source"  # on an initializer captured_tables made: where its constants came from
_FAMILY_ATTRS = ("api_implements", "_implements")  # a copy is no member of its original's family


def _evaluator(source_graph) -> Evaluator:
    """Values of the source graph's constant sub-graphs (``constvalues``): a table's keys and
    values may be computed from constants (``tf.range``, a Cast, a Reshape), not only read off a
    Const. Bounded by this task's import-time constant limit (at 8 bytes per element)."""
    return Evaluator(source_graph.node, _table_elements(), 2 * _table_elements())


def _table_elements() -> int:
    from .oppolicy import constant_limit

    limit = constant_limit()
    return max(_TABLE_ELEMENTS, limit // 8) if limit else _TABLE_ELEMENTS


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


def _too_large(init, elements: int) -> str:
    limit = _table_elements()
    return ("it is too large: its initializer %s computes %d keys or values, over the %d elements the server "
            "computes for a table (an eighth of the import-time constant limit, which is a quarter of "
            "`tffreeze serve --task-memory-bytes`). Freeze it on a server started with --task-memory-bytes of at "
            "least %d" % (init.name, elements, limit, 32 * elements))


def _restored(table, init, by_name, reader) -> Tuple[Optional[Tuple[np.ndarray, np.ndarray]], str]:
    """(keys, values) of a table the saver restores (``LookupTableImportV2`` fed by a restore op),
    read from the checkpoint; else (None, why not) or (None, "") when the saver does not fill it."""
    sources = []
    for tensor in init.input[1:3]:
        name, index = node_of(tensor), int(tensor.split(":")[1]) if ":" in tensor else 0
        while name in by_name and by_name[name].op == "Identity":
            tensor = by_name[name].input[0]
            name, index = node_of(tensor), int(tensor.split(":")[1]) if ":" in tensor else 0
        restore = by_name.get(name)
        if restore is None or restore.op not in _RESTORE_OPS:
            return None, ""
        names = by_name.get(node_of(restore.input[1]))
        if names is None or names.op != "Const":
            return None, ""
        keys = tensor_util.MakeNdarray(names.attr["value"].tensor).reshape(-1)
        if restore.op == "RestoreV2":
            slices = by_name.get(node_of(restore.input[2]))
            if slices is None or slices.op != "Const" or any(
                    tensor_util.MakeNdarray(slices.attr["value"].tensor).reshape(-1)):
                return None, ""
        if index >= len(keys):
            return None, ""
        sources.append(keys[index].decode() if isinstance(keys[index], bytes) else str(keys[index]))
    if table.op not in _RESTORED_OPS:
        return None, ("its contents are restored from the checkpoint (%s) in %s's layout, which the server does "
                      "not read" % (", ".join(sources), table.op))
    if reader is None:
        return None, "its contents are restored from a checkpoint (%s) the upload lacks" % ", ".join(sources)
    shapes = reader.get_variable_to_shape_map()
    missing = [s for s in sources if s not in shapes]
    if missing:
        return None, "its contents are restored from checkpoint keys the checkpoint lacks: %s" % ", ".join(missing)
    elements = max(int(np.prod(shapes[s], dtype=np.int64)) for s in sources)
    if elements > _table_elements():
        return None, _too_large(init, elements)
    keys, values = (np.asarray(reader.get_tensor(s)) for s in sources)
    if values.ndim != 1:
        return None, "its values are not scalars (checkpoint key %s has shape %s)" % (sources[1], list(values.shape))
    return (keys, values), "from the checkpoint's %s and %s" % tuple(sources)


def _contents(table, initializers, values_of: Evaluator, by_name,
              reader) -> Tuple[Optional[Tuple[np.ndarray, np.ndarray]], str]:
    """(sorted search keys, values in the same order) and where they come from, for a table
    filled from constants or restored from the checkpoint, else (None, why not)."""
    inits = initializers.get(table.name, [])
    if len(inits) != 1:
        return None, "it is filled %s" % ("by no initializer in the graph" if not inits else "by several initializers")
    init = inits[0]
    if init.op not in _INIT_OPS:
        return None, "its initializer %s (%s) reads a file" % (init.name, init.op)
    restored, source = _restored(table, init, by_name, reader)
    if restored is not None or source:
        if restored is None:
            return None, source
        keys, values = restored
    else:
        source = init.attr[_SOURCE_ATTR].s.decode() if _SOURCE_ATTR in init.attr else "from constants"
        keys, values = values_of.value(init.input[1]), values_of.value(init.input[2])
        if keys is None or values is None:
            big = [values_of.refused_size(t) for t in init.input[1:3] if values_of.value(t) is None]
            if all(big):  # (not when one of them does not follow from constants at all)
                big = max(big)
                return None, _too_large(init, big)
            return None, ("its initializer %s takes keys or values that do not follow from constants alone "
                          "(through ops the server evaluates)" % init.name)
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
    return (search[order], values[order]), source


class _Scope:
    """The top-level graph's nodes or one function body's, and how a node's output is written
    there ('node:1' in a graph, 'node:output_true:0' in a function)."""

    def __init__(self, nodes, function=None):
        self.nodes, self.function = nodes, function

    def out(self, name: str, arg: str = "output", flat: int = 0, index: int = 0) -> str:
        if self.function is not None:
            return "%s:%s:%d" % (name, arg, index)
        return name if flat == 0 else "%s:%d" % (name, flat)

    def norm(self, tensor: str) -> str:
        if self.function is not None:
            return tensor
        name, _, index = tensor.partition(":")
        return "%s:%s" % (name, index or "0")


class _Flow:
    """Where a table handle goes in one scope, from the tensors that carry it."""

    def __init__(self, scope: _Scope, starts: List[str]):
        self.lookups: List = []  # LookupTableFind / Size nodes on the handle
        self.calls: Dict[str, Tuple[object, Set[int]]] = {}  # call node -> (node, input positions)
        self.other: List[Tuple[str, str]] = []  # (op, node) using it otherwise
        self.v1 = False  # it went through control flow v1
        self.direct = True  # every use is a lookup on the table node itself
        users: Dict[str, List] = {}
        for node in scope.nodes:
            for pos, tensor in enumerate(node.input):
                if not tensor.startswith("^"):
                    users.setdefault(scope.norm(tensor), []).append((node, pos))
        self.carrying = {scope.norm(t) for t in starts}
        merges, work = [], list(self.carrying)
        while work:
            tensor = work.pop()
            for node, pos in users.get(tensor, ()):
                carried = []
                if node.op in _FIND_OPS | _SIZE_OPS and pos == 0:
                    if all(node is not n for n in self.lookups):
                        self.lookups.append(node)
                    continue
                self.direct = False
                if node.op in _PASS or node.op in _V1:
                    self.v1 = self.v1 or node.op in _V1
                    if node.op.endswith("Merge"):
                        merges.append(node)
                    carried = [scope.out(node.name, arg, flat) for arg, flat in {**_PASS, **_V1}[node.op]]
                elif node.op in _WHILE | _IF | _CASE | _CALL:
                    self.calls.setdefault(node.name, (node, set()))[1].add(pos)
                    if node.op in _WHILE:  # a loop variable: the loop's output too (the body returns it)
                        carried = [scope.out(node.name, "output", pos, pos)]
                else:
                    self.other.append((node.op, node.name))
                for tensor in carried:
                    if scope.norm(tensor) not in self.carrying:
                        self.carrying.add(scope.norm(tensor))
                        work.append(scope.norm(tensor))
        for merge in merges:  # a Merge of this table and something else: not this table
            if any(scope.norm(t) not in self.carrying for t in merge.input if not t.startswith("^")):
                self.other.append(("Merge with another tensor", merge.name))


def _callees(node, positions: Set[int]) -> List[Tuple[str, Optional[int], Set[int], bool]]:
    """(attribute, index in a list attribute or None, argument positions, loop body?) of the
    functions a call node passes the handle to, at input ``positions``."""
    if node.op in _WHILE:
        return [("cond", None, positions, False), ("body", None, positions, True)]
    if node.op in _CALL:
        return [("f", None, positions, False)]
    args = {p - 1 for p in positions if p > 0}
    if node.op in _IF:
        return [("then_branch", None, args, False), ("else_branch", None, args, False)]
    return [("branches", i, args, False) for i in range(len(node.attr["branches"].list.func))]


class _Freezer:
    """Rewrites the lookups of one table in a graph and the functions its handle reaches."""

    def __init__(self, graph_def, table, contents):
        self.graph_def, self.table = graph_def, table
        self.library = {f.signature.name: f for f in graph_def.library.function}
        self.contents = contents
        self.key_dtype, self.value_dtype = table.attr["key_dtype"].type, table.attr["value_dtype"].type
        self.copies: Dict[Tuple[str, frozenset, bool], Optional[str]] = {}
        self.added: List = []  # new FunctionDefs, added on commit
        self.problems: List[str] = []
        self.lookups = 0

    # -- where the handle goes -------------------------------------------------------------
    def plan(self) -> Tuple[_Flow, Dict[str, List[Tuple[str, Optional[int], str]]]]:
        """The top-level flow and, per call node, the function attributes to point at copies."""
        flow = _Flow(_Scope(self.graph_def.node), [self.table.name])
        return flow, self._calls(flow, "the graph")

    def _calls(self, flow: _Flow, where: str) -> Dict[str, List[Tuple[str, Optional[int], str]]]:
        for op, name in flow.other:
            self.problems.append("use it in %s (node %s%s)" % (op, name, "" if where == "the graph" else
                                                                    " of function %s" % where))
        renames: Dict[str, List[Tuple[str, Optional[int], str]]] = {}
        for name, (node, positions) in sorted(flow.calls.items()):
            for attr, index, args, loop in _callees(node, positions):
                value = node.attr[attr].func if index is None else node.attr[attr].list.func[index]
                if not args:
                    continue
                copy = self._copy(value.name, frozenset(args), loop, node)
                if copy is not None:
                    renames.setdefault(name, []).append((attr, index, copy))
        return renames

    def _copy(self, fname: str, args: frozenset, loop: bool, caller) -> Optional[str]:
        """The name of a copy of ``fname`` with the lookups on arguments ``args`` rewritten (None
        when it has none; then the call keeps ``fname``)."""
        key = (fname, args, loop)
        if key in self.copies:
            return self.copies[key]
        self.copies[key] = None  # (a recursive call passes it on unchanged)
        func = self.library.get(fname)
        if func is None:
            self.problems.append("pass it to %s (node %s), whose function %s is not in the library"
                                 % (caller.op, caller.name, fname))
            return None
        copy = function_pb2.FunctionDef()
        copy.CopyFrom(func)
        inputs = copy.signature.input_arg
        if any(k >= len(inputs) for k in args):
            self.problems.append("pass it to %s (node %s) with more arguments than %s takes"
                                 % (caller.op, caller.name, fname))
            return None
        scope = _Scope(copy.node_def, copy)
        flow = _Flow(scope, [inputs[k].name for k in args])
        for j, out in enumerate(copy.signature.output_arg):
            carries = scope.norm(copy.ret.get(out.name, "")) in flow.carrying
            if loop and j in args and not carries:
                self.problems.append("replace it in the loop %s (node %s)" % (fname, caller.name))
            elif carries and not (loop and j in args):
                self.problems.append("return it from function %s (node %s)" % (fname, caller.name))
        renames = self._calls(flow, fname)
        if not flow.lookups and not renames:
            return None
        for node in list(copy.node_def):
            for attr, index, new in renames.get(node.name, ()):
                (node.attr[attr].func if index is None else node.attr[attr].list.func[index]).name = new
        for lookup in flow.lookups:
            self._rewrite(scope, lookup, flow.v1)
        name, n = "%s_frozen_tables" % fname, 0
        while name in self.library:
            n += 1
            name = "%s_frozen_tables_%d" % (fname, n)
        copy.signature.name = name
        for attr in _FAMILY_ATTRS:
            copy.attr.pop(attr, None)
        self.library[name] = copy
        self.added.append(copy)
        self.copies[key] = name
        return name

    # -- rewriting ---------------------------------------------------------------------------
    def commit(self, flow: _Flow, renames) -> None:
        self.graph_def.library.function.extend(self.added)
        for node in list(self.graph_def.node):
            for attr, index, new in renames.get(node.name, ()):
                (node.attr[attr].func if index is None else node.attr[attr].list.func[index]).name = new
        for lookup in flow.lookups:
            self._rewrite(_Scope(self.graph_def.node), lookup, flow.v1)

    def _rewrite(self, scope: _Scope, node, in_frame: bool) -> None:
        search, values = self.contents
        self.lookups += 1
        if node.op in _FIND_OPS:
            values = values.astype(tf_dtypes.as_dtype(self.value_dtype).as_numpy_dtype)
            _lookup(scope, node, search, values, self.key_dtype, self.value_dtype, in_frame)
            old = "values"
        else:
            name, controls = node.name, [i for i in node.input if i.startswith("^")]
            scope.nodes.remove(node)
            _const(scope.nodes, name, np.array(len(search), np.int64)).input.extend(controls)
            old = "size"
        if scope.function is not None:  # the rewritten node's output is named 'output', not 'values'/'size'
            before, after = "%s:%s:" % (node.name, old), "%s:output:" % node.name
            for other in scope.nodes:
                for i, tensor in enumerate(other.input):
                    if tensor.startswith(before):
                        other.input[i] = after + tensor[len(before):]
            for key, tensor in list(scope.function.ret.items()):
                if tensor.startswith(before):
                    scope.function.ret[key] = after + tensor[len(before):]


def _const(nodes, name: str, value: np.ndarray, controls: Tuple[str, ...] = ()):
    node = nodes.add(name=name, op="Const")
    node.attr["dtype"].type = tensor_util.make_tensor_proto(value).dtype
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
    node.input.extend(controls)
    return node


def _add(nodes, name: str, op: str, inputs: List[str], **attrs):
    node = nodes.add(name=name, op=op)
    node.input.extend(inputs)
    for key, (kind, value) in attrs.items():
        if kind == "type":
            node.attr[key].type = value
        else:
            setattr(node.attr[key], kind, value)
    return node


def _lookup(scope: _Scope, find, search: np.ndarray, values: np.ndarray, key_dtype: int, value_dtype: int,
            in_frame: bool = False) -> None:
    """Replace the lookup node ``find`` by plain ops (the last of them keeps its name). In a
    control flow v1 frame the constants take a control input from the query (so they are in
    its frame and iteration)."""
    nodes, out = scope.nodes, scope.out
    name, query, default = find.name, find.input[1], find.input[2]
    controls = [i for i in find.input if i.startswith("^")]
    frame = ("^" + node_of(query),) if in_frame else ()
    base = name + "/table"
    nodes.remove(find)
    if key_dtype == _STRING:
        _add(nodes, base + "/fingerprint", "StringToHashBucketFast", [query], num_buckets=("i", _BUCKETS))
        hashed = out(base + "/fingerprint")
    elif key_dtype == _INT64:
        hashed = query
    else:
        _add(nodes, base + "/as_int64", "Cast", [query], SrcT=("type", key_dtype), DstT=("type", _INT64))
        hashed = out(base + "/as_int64", "y")
    _const(nodes, base + "/row_shape", np.array([1, -1], np.int32), frame)
    _add(nodes, base + "/row", "Reshape", [hashed, out(base + "/row_shape")], T=("type", _INT64),
         Tshape=("type", _INT32))
    _const(nodes, base + "/sorted_keys", search.reshape(1, -1), frame)
    _add(nodes, base + "/position", "LowerBound", [out(base + "/sorted_keys"), out(base + "/row")],
         T=("type", _INT64), out_type=("type", _INT32))
    _const(nodes, base + "/last", np.array(len(search) - 1, np.int32), frame)
    _add(nodes, base + "/clipped", "Minimum", [out(base + "/position"), out(base + "/last")], T=("type", _INT32))
    _const(nodes, base + "/keys", search, frame)
    _const(nodes, base + "/values", values, frame)
    _const(nodes, base + "/axis", np.array(0, np.int32), frame)
    _add(nodes, base + "/found_key", "GatherV2", [out(base + "/keys"), out(base + "/clipped", "z"),
                                                  out(base + "/axis")],
         Tparams=("type", _INT64), Tindices=("type", _INT32), Taxis=("type", _INT32), batch_dims=("i", 0))
    _add(nodes, base + "/hit", "Equal", [out(base + "/found_key"), out(base + "/row")], T=("type", _INT64))
    _add(nodes, base + "/value", "GatherV2", [out(base + "/values"), out(base + "/clipped", "z"),
                                              out(base + "/axis")],
         Tparams=("type", value_dtype), Tindices=("type", _INT32), Taxis=("type", _INT32), batch_dims=("i", 0))
    _add(nodes, base + "/chosen", "SelectV2", [out(base + "/hit", "z"), out(base + "/value"), default],
         T=("type", value_dtype))
    _add(nodes, base + "/query_shape", "Shape", [query], T=("type", key_dtype), out_type=("type", _INT32))
    _add(nodes, name, "Reshape", [out(base + "/chosen"), out(base + "/query_shape")] + controls,
         T=("type", value_dtype), Tshape=("type", _INT32))


def freeze_tables(graph_def, source_graph, warnings: List[str], reader=None) -> int:
    """Rewrite every lookup on a table filled from constants (or restored from the checkpoint
    ``reader``) in ``graph_def`` (in place; the table handles are left for pruning, or passed on
    unused into functions), wherever the handle reaches it; refuse a table the graph still needs
    that cannot be rewritten. ``source_graph``: the upload's whole graph (where initializers and
    the saver live). Returns how many tables were rewritten."""
    tables = [n for n in graph_def.node if n.op in TABLE_OPS]
    if not tables:
        return 0
    values_of = _evaluator(source_graph)
    initializers = _initializers(source_graph)
    by_name = {n.name: n for n in source_graph.node}
    done = 0
    for table in tables:
        contents, why = _contents(table, initializers, values_of, by_name, reader)
        freezer = _Freezer(graph_def, table, contents)
        flow, renames = freezer.plan()
        if contents is None or freezer.problems:
            if freezer.problems:
                also = "the outputs also %s" % "; ".join(sorted(set(freezer.problems)))
                why = also if contents is not None else "%s, and %s" % (why, also)
            lookups = ["%s:0" % u.name for u in flow.lookups if u.op in _FIND_OPS]
            cut = ("cut the graph after the lookup: name these tensors as inputs: %s. Each becomes a placeholder, "
                   "fed with the ids looked up" % ", ".join(lookups[:10])
                   if lookups and flow.direct and not flow.calls and len(lookups) == len(flow.lookups)
                   else "cut the graph after the lookup (inputs)")
            raise FailedPrecondition(
                "the outputs need lookup table %s, and %s: a frozen graph cannot carry it initialised, so it would "
                "fail when run (\"Table not initialized\"). Build the table from constant keys and values "
                "(tf.lookup.KeyValueTensorInitializer), or %s." % (table.name, why, cut),
                "ERROR_REASON_GRAPH_DOES_NOT_RUN", table=table.name)
        freezer.commit(flow, renames)
        done += 1
        inside = (" (%d lookup(s), %d of them inside functions, rewritten in %d function copies the calls name)" % (
            freezer.lookups, freezer.lookups - len(flow.lookups), len(freezer.added)) if freezer.added else "")
        warnings.append("lookup table %s (%d entries, %s) became constants and a sorted search%s: the frozen "
                        "graph needs no table initialisation" % (table.name, len(contents[0]), why, inside))
    return done


def _lookup_dtypes(graph_def) -> List[Tuple[int, int]]:
    """The (key, value) dtypes the graph's lookups (top level and functions) use, each once."""
    pairs: List[Tuple[int, int]] = []
    for node in list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]:
        if node.op in _FIND_OPS | {"LookupTableImportV2", "LookupTableInsertV2"}:
            pair = (node.attr["Tin"].type, node.attr["Tout"].type)
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def captured_tables(captures, graph_def) -> int:
    """A TF2 SavedModel's signature frozen by ``convert_variables_to_constants_v2`` keeps each
    lookup table its function captured as a ``resource`` Placeholder, which nothing can feed.
    ``captures``: (the loaded table's handle, the Placeholder's name) of the function's
    captures. Each captured table is read (``LookupTableExportV2``: what the SavedModel's
    restore left in it) and its Placeholder becomes a ``HashTableV2`` filled from constants by an
    initializer beside it, so that ``freeze_tables`` rewrites its lookups as it does a TF1
    table's. Refuses a table whose contents cannot be read as scalar values. Returns how many
    Placeholders were replaced."""
    import tensorflow as tf

    by_name = {n.name: n for n in graph_def.node}
    pairs = _lookup_dtypes(graph_def)
    done = 0
    for handle, name in captures:
        node = by_name.get(name)
        if node is None or node.op != "Placeholder" or node.attr["dtype"].type != tf_dtypes.resource.as_datatype_enum:
            continue
        try:  # a handle of another resource (a variable, a dataset) is not a table: left as it is
            size = int(tf.raw_ops.LookupTableSizeV2(table_handle=handle).numpy())
        except (tf.errors.OpError, TypeError, ValueError):
            continue
        exported, why = None, "no lookup in the graph says its key and value types"
        for key_dtype, value_dtype in pairs:
            if size > _table_elements():
                why = ("it holds %d entries, over the %d the server computes for a table (an eighth of the "
                       "import-time constant limit, a quarter of `tffreeze serve --task-memory-bytes`)"
                       % (size, _table_elements()))
                break
            try:
                keys, values = tf.raw_ops.LookupTableExportV2(
                    table_handle=handle, Tkeys=tf_dtypes.as_dtype(key_dtype), Tvalues=tf_dtypes.as_dtype(value_dtype))
            except (tf.errors.OpError, TypeError, ValueError) as exc:
                why = "its contents cannot be read (%s)" % (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                continue
            keys, values = keys.numpy(), values.numpy()
            if values.ndim != 1 or keys.shape[:1] != values.shape[:1]:
                why = "its values are not scalars (shape %s)" % list(values.shape[1:])
                break
            exported = (keys, values, key_dtype, value_dtype)
            break
        if exported is None:
            raise FailedPrecondition(
                "the signature uses a lookup table (captured as %s:0), and %s: a frozen graph cannot carry it. Build "
                "the table from constant keys and values (tf.lookup.StaticHashTable with a "
                "tf.lookup.KeyValueTensorInitializer), or look the ids up before the model" % (name, why),
                "ERROR_REASON_GRAPH_DOES_NOT_RUN", table=name)
        keys, values, key_dtype, value_dtype = exported
        node.op = "HashTableV2"
        node.ClearField("attr")
        node.attr["key_dtype"].type = key_dtype
        node.attr["value_dtype"].type = value_dtype
        node.attr["shared_name"].s = b""
        node.attr["container"].s = b""
        node.attr["use_node_name_sharing"].b = False
        _const(graph_def.node, name + "/keys", keys)
        _const(graph_def.node, name + "/values", values)
        init = _add(graph_def.node, name + "/table_init", "InitializeTableV2",
                    [name, name + "/keys", name + "/values"], Tkey=("type", key_dtype), Tval=("type", value_dtype))
        init.attr[_SOURCE_ATTR].s = ("read from the SavedModel's table, which the signature captured as %s:0"
                                     % name).encode()
        done += 1
    return done


def refuse_resource_inputs(graph_def) -> None:
    """A frozen graph whose outputs need a ``resource`` Placeholder (a handle to a table, a
    dataset, an iterator the graph captured) cannot run: nothing can feed one. Refused, naming it."""
    found = ["%s:0" % n.name for n in graph_def.node
             if n.op == "Placeholder" and n.attr["dtype"].type == tf_dtypes.resource.as_datatype_enum]
    if found:
        raise FailedPrecondition(
            "the outputs need %s, a resource handle input (a table, dataset or iterator the graph captured, not "
            "a value): no runtime can feed one, so the frozen graph could not run. Compute the outputs without "
            "it, or build what it holds from constants (a lookup table: tf.lookup.StaticHashTable with a "
            "tf.lookup.KeyValueTensorInitializer)" % ", ".join(found[:10]),
            "ERROR_REASON_GRAPH_DOES_NOT_RUN", inputs=",".join(found[:10]))


__all__ = ["freeze_tables", "captured_tables", "refuse_resource_inputs", "TABLE_OPS"]
