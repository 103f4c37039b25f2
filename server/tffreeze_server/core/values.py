"""Which value each variable of the frozen graph takes.

By default, the checkpoint key the saver's restore ops give it (else its own
name). ``var_map`` overrides the key; ``ema`` prefers the key's
``/ExponentialMovingAverage`` shadow; variables outside ``include_variables`` or
inside ``exclude_variables`` take their initial value, which must be a constant
in the graph (a partial restore, as with ``Saver(var_list=...)``).
"""

from __future__ import annotations

import difflib
import re
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import errors as tf_errors
from tensorflow.python.framework import tensor_util

from .errors import DataLoss, FailedPrecondition, InvalidArgument, ResourceExhausted, without_paths
from .graph import LARGE_BYTES, node_of, nodes_by_name
from .oproles import ASSIGN_OPS, MOVING_AVERAGE_UPDATE_OPS, VARIABLE_OPS
from .saver_map import KeyRef
from .spec import FreezeSpec
from .splice import Splice, spliceable

# A read that failed because memory ran out, not because of the file: an allocation refused
# (the task memory limit, RLIMIT_DATA), or a read into a buffer whose allocation failed unchecked
# (EFAULT, "Bad address").
_OUT_OF_MEMORY = re.compile(r"Bad address|bad_alloc|Cannot allocate memory|OOM when allocating|"
                            r"failed to allocate|out of memory", re.IGNORECASE)

EMA_SUFFIX = "/ExponentialMovingAverage"
Values = Dict[str, Tuple[np.ndarray, int]]


def _slice(array: np.ndarray, spec: str) -> np.ndarray:
    """Apply a checkpoint slice spec 'd0 d1 s0,l0:s1,l1' ('-' means the whole dimension)."""
    if not spec:
        return array
    index = []
    for dim in spec.split(" ")[-1].split(":"):
        if dim == "-":
            index.append(slice(None))
        else:
            start, length = (int(v) for v in dim.split(","))
            index.append(slice(start, start + length))
    return array[tuple(index)]


def moving_average_shadows(full_graph_def) -> Dict[str, str]:
    """{variable: the variable holding its moving average}, read from the update training runs
    (``shadow -= (shadow - variable) * (1 - decay)``), whatever either is named: an average made
    with ``ExponentialMovingAverage(name=...)`` is not ``VAR/ExponentialMovingAverage``."""
    by_name = nodes_by_name(full_graph_def)

    def variable_read(name: str, depth: int = 0):
        node = by_name.get(node_of(name))
        if node is None or depth > 3:
            return None
        if node.op in VARIABLE_OPS:
            return node.name
        if node.op in ("ReadVariableOp", "Identity") and node.input:
            return variable_read(node.input[0], depth + 1)
        return None

    shadows: Dict[str, str] = {}
    for node in full_graph_def.node:
        if node.op not in MOVING_AVERAGE_UPDATE_OPS or len(node.input) < 2:
            continue
        shadow = variable_read(node.input[0])
        todo, seen = [(node_of(node.input[1]), 0)], set()
        while todo and shadow is not None:
            name, depth = todo.pop()
            diff = by_name.get(name)
            if diff is None or name in seen or depth > 3:
                continue
            seen.add(name)
            data = [i for i in diff.input if not i.startswith("^")]  # (ordered after the optimizer: ^Adam)
            if diff.op == "Sub" and len(data) == 2 and variable_read(data[0]) == shadow:
                averaged = variable_read(data[1])
                if averaged is not None and averaged != shadow:
                    shadows.setdefault(averaged, shadow)
                    break
            todo.extend((node_of(i), depth + 1) for i in diff.input if not i.startswith("^"))
    return shadows


def averages_in_keys(full_graph_def, mapping: Dict[str, KeyRef], var_map: Dict[str, str], keys
                     ) -> Tuple[Dict[str, str], set]:
    """({variable: the checkpoint key of its average}, every key that holds an average). A saver
    may key the averages as it likes (``Saver({"w": w, "w_avg": ema.average(w)})``)."""
    shadow_key = {var: (KeyRef(var_map[shadow]) if shadow in var_map else (mapping.get(shadow) or KeyRef(shadow))).key
                  for var, shadow in moving_average_shadows(full_graph_def).items()}
    return shadow_key, set(shadow_key.values()) | {k for k in keys if k.endswith(EMA_SUFFIX)}


def holds_averages(var: str, key: str, shadow_key: Dict[str, str], average_keys: set, keys) -> bool:
    """``var``, restored from ``key``, has an average in the checkpoint that it does not hold."""
    return key not in average_keys and (var + EMA_SUFFIX in keys or key + EMA_SUFFIX in keys
                                        or shadow_key.get(var) in keys)


def initial_value(var: str, full_graph_def, field: str = "") -> np.ndarray:
    """The constant a variable's initializer assigns, read from the graph. ``field``: the
    option that left it out of the restore, named by a refusal."""
    named = {"field": field} if field else {}
    by_name = nodes_by_name(full_graph_def)
    for node in full_graph_def.node:
        if node.op in ASSIGN_OPS and node.input and node_of(node.input[0]) == var \
                and not node.name.startswith(("save/", "save_")):
            src = by_name.get(node_of(node.input[1]))
            while src is not None and src.op == "Identity" and src.input:
                src = by_name.get(node_of(src.input[0]))
            if src is not None and src.op == "Const":
                return tensor_util.MakeNdarray(src.attr["value"].tensor)
            raise FailedPrecondition("variable %s is left out of the checkpoint restore, but its initial value is "
                                     "computed by %s (%s), not a constant; include it, or map it to a checkpoint "
                                     "key (var_map)" % (var, src.name if src is not None else "?",
                                                        src.op if src is not None else "missing"),
                                     "ERROR_REASON_VARIABLE_VALUE_MISSING", variables=var, **named)
    raise FailedPrecondition("variable %s is left out of the checkpoint restore and has no initializer in the "
                             "graph; include it, or map it to a checkpoint key (var_map)" % var,
                             "ERROR_REASON_VARIABLE_VALUE_MISSING", variables=var, **named)


def _check_names(names, variables: List[str], field: str) -> None:
    for name in names:
        if name not in variables:
            close = difflib.get_close_matches(name, variables, n=3, cutoff=0.5)
            raise InvalidArgument("%s: %s is not a variable the outputs need%s" % (
                field, name, ("; did you mean %s?" % ", ".join(close)) if close else
                " (%s)" % ", ".join(variables[:10])), "ERROR_REASON_NAME_NOT_IN_GRAPH", field="options." + field,
                name=name, suggestions=",".join(close))


def computed_from(graph_def, have: List[str], lacking: List[str], shown: int = 3) -> List[str]:
    """Tensors the graph computes from the variables in ``have`` alone that a node needing one
    in ``lacking`` reads: the last results a partial save (a Saver given some variables) can
    freeze, deepest first. Variable reads themselves are not offered."""
    by_name = nodes_by_name(graph_def)
    have_set, lacking_set = set(have), set(lacking)
    memo: Dict[str, Tuple[bool, bool]] = {}  # node -> (reads a variable it has, reads one it lacks)

    def reads(name: str) -> Tuple[bool, bool]:
        stack = [(name, False)]
        while stack:  # iterative post-order: a node after everything it reads (a v1 loop's back edge is cut)
            top, done = stack.pop()
            if top not in by_name or (top in memo and not done):
                continue
            node = by_name[top]
            if not done:
                memo[top] = (top in have_set, top in lacking_set)  # provisional: a cycle reads it as so far
                stack.append((top, True))
                stack.extend((node_of(i), False) for i in node.input if not i.startswith("^"))
                continue
            got, lack = memo[top]
            for i in node.input:
                if not i.startswith("^"):
                    g, l_ = memo.get(node_of(i), (False, False))
                    got, lack = got or g, lack or l_
            memo[top] = (got, lack)
        return memo.get(name, (False, False))

    order = {n.name: i for i, n in enumerate(graph_def.node)}
    found = set()
    for node in graph_def.node:
        if not reads(node.name)[1]:
            continue
        for i in node.input:
            src = by_name.get(node_of(i))
            if i.startswith("^") or src is None or src.op in VARIABLE_OPS or src.op == "ReadVariableOp" or (
                    src.op == "Identity" and src.input and by_name.get(node_of(src.input[0])) is not None
                    and by_name[node_of(src.input[0])].op in VARIABLE_OPS):
                continue
            got, lack = reads(src.name)
            if got and not lack:
                found.add(i if ":" in i else i + ":0")
    return sorted(found, key=lambda t: -order.get(node_of(t), 0))[:shown]


class Stored:
    """A large value left in the checkpoint's data file, to be spliced into the
    frozen graph when it is written (``splice``); never read into memory here."""

    def __init__(self, variable: str, key: str, entry):
        self.splice = Splice(variable, key, entry)
        self.shape = entry.shape
        self.nbytes = entry.size
        self.dtype = np.dtype(tf.dtypes.as_dtype(entry.dtype).as_numpy_dtype)


def read_values(graph_def, full_graph_def, reader, mapping: Dict[str, KeyRef], spec: FreezeSpec,
                progress, entries=None) -> Tuple[Values, List[str], List[str]]:
    """(values by variable node, EMA-substituted variables, warnings); ``progress(message, fraction)``.
    With ``entries`` (the checkpoint index, ``splice.read_index``), large whole
    numeric values are not read: they come back as ``Stored``."""
    dtypes = reader.get_variable_to_dtype_map() if reader is not None else {}
    var_map = spec.var_map
    include = list(spec.include_variables)
    exclude = list(spec.exclude_variables)
    variables = [n for n in graph_def.node if n.op in VARIABLE_OPS]
    names = [n.name for n in variables]
    _check_names(include, names, "include_variables")
    _check_names(exclude, names, "exclude_variables")
    everywhere = [n.name for n in full_graph_def.node if n.op in VARIABLE_OPS]
    for graph_var, key in var_map.items():  # a misspelt side of --var-map is said, never ignored
        if graph_var not in everywhere:
            close = difflib.get_close_matches(graph_var, everywhere, n=3, cutoff=0.5)
            raise InvalidArgument("var_map %s=%s: the graph has no variable %s%s" % (
                graph_var, key, graph_var, "; did you mean %s?" % ", ".join(close) if close else
                " (its variables: %s)" % ", ".join(everywhere[:10])), "ERROR_REASON_NAME_NOT_IN_GRAPH",
                field="options.var_map", name=graph_var, suggestions=",".join(close))
        if dtypes and KeyRef(key).key not in dtypes:
            keys = sorted(k for k in dtypes if k != "_CHECKPOINTABLE_OBJECT_GRAPH")
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
            raise InvalidArgument("var_map %s=%s: the checkpoint has no key %s%s" % (
                graph_var, key, key, "; did you mean %s?" % ", ".join(close) if close else
                " (its keys: %s)" % ", ".join(keys[:10])), "ERROR_REASON_NAME_NOT_IN_GRAPH",
                field="options.var_map", name=key, suggestions=",".join(close))
    shadow_key, average_keys = averages_in_keys(full_graph_def, mapping, var_map, dtypes)
    values: Values = {}
    missing, ema_used, no_shadow, warnings = [], [], [], []
    used_keys = set()
    for i, node in enumerate(variables):
        want = tf.dtypes.as_dtype(node.attr["dtype"].type).base_dtype
        if (include and node.name not in include) or node.name in exclude:
            try:
                array = initial_value(node.name, full_graph_def, "options.exclude_variables" if node.name in exclude
                                      else "options.include_variables")
            except FailedPrecondition as exc:
                key = KeyRef(var_map[node.name]).key if node.name in var_map else (
                    mapping.get(node.name) or KeyRef(node.name)).key
                if key in dtypes:
                    raise
                # neither way has a value: including it cannot work either (a partial save)
                held = [n for n in names if n != node.name and
                        (KeyRef(var_map[n]).key if n in var_map else (mapping.get(n) or KeyRef(n)).key) in dtypes]
                partial = computed_from(graph_def, held, [n for n in names if n not in held])
                exc.message = exc.message.replace(
                    "; include it, or map it to a checkpoint key (var_map)",
                    "; and the checkpoint has no value for it either%s" % (
                        ": freeze what the saved variables compute alone (options.outputs %s)" % ",".join(partial)
                        if partial else ", so the outputs cannot be frozen from it"))
                exc.args = (exc.message,)
                raise
            warnings.append("variable %s takes its initial value (left out of the restore)" % node.name)
        else:
            ref = KeyRef(var_map[node.name]) if node.name in var_map else (mapping.get(node.name) or KeyRef(node.name))
            key = ref.key
            if spec.ema:  # a var_map names the key whose average is used (or that key itself): checked the same
                mapped = node.name in var_map
                shadow = next((k for k in ((ref.key,) if mapped and ref.key in average_keys else ()) +
                               ((ref.key + EMA_SUFFIX,) if mapped else
                                (node.name + EMA_SUFFIX, ref.key + EMA_SUFFIX, shadow_key.get(node.name, "")))
                               if k in dtypes), None)
                if shadow is not None:
                    key, ref = shadow, KeyRef(shadow, ref.slice_spec)
                    ema_used.append(node.name)
                else:
                    no_shadow.append("%s (key %s, from var_map)" % (node.name, ref.key) if mapped else node.name)
            if key not in dtypes:
                missing.append("%s (checkpoint key %r)" % (node.name, key))
                continue
            used_keys.add(key)
            entry = entries.get(key) if entries and not ref.slice_spec else None
            shape = tf.TensorShape(node.attr["shape"].shape) if "shape" in node.attr else tf.TensorShape(None)
            if (entry is not None and entry.size >= LARGE_BYTES and want == dtypes[key].base_dtype
                    and spliceable(entry, want.as_datatype_enum, None) and shape.is_compatible_with(entry.shape)):
                values[node.name] = (Stored(node.name, key, entry), want.as_datatype_enum)
                progress("%s stays in the data file until the graph is written" % node.name,
                         0.3 + 0.3 * (i + 1) / max(1, len(variables)))
                continue
            try:
                array = _slice(np.asarray(reader.get_tensor(key)), ref.slice_spec)
            except (tf_errors.OpError, IndexError, ValueError) as exc:
                detail = without_paths((getattr(exc, "message", None) or str(exc)).strip())
                if isinstance(exc, tf_errors.ResourceExhaustedError) or _OUT_OF_MEMORY.search(detail):
                    raise ResourceExhausted(
                        "the task ran out of memory while reading variable %s (checkpoint key %r: %s): the upload "
                        "needs more than this server gives one task (tffreeze serve --task-memory-bytes); the "
                        "checkpoint is not at fault" % (node.name, key, detail.splitlines()[0][:200] if detail else
                                                       type(exc).__name__),
                        "ERROR_REASON_MEMORY_LIMIT", stage="STAGE_READING_VARIABLES", variable=node.name) from None
                if not (isinstance(exc, tf_errors.DataLossError) or "Checksum does not match" in detail):
                    raise InvalidArgument(
                        "cannot read variable %s (checkpoint key %r): %s. The data shard is truncated or corrupt; "
                        "re-upload the .data-* files exactly as TensorFlow wrote them."
                        % (node.name, key, detail.splitlines()[0] if detail else type(exc).__name__),
                        "ERROR_REASON_CHECKPOINT_CORRUPT", variable=node.name) from None
                raise DataLoss(
                    "the stored bytes of variable %s (checkpoint key %r) do not match the checksum its index "
                    "records (%s): the data shard was damaged after TensorFlow wrote it. Re-upload the .data-* "
                    "files from the training machine." % (node.name, key, detail.splitlines()[0][:200] if detail else
                                                            "crc32c mismatch"),
                    "ERROR_REASON_CHECKPOINT_CORRUPT", variable=node.name, key=key[:200]) from None
            if want != dtypes[key].base_dtype:
                mapped = node.name in var_map
                raise InvalidArgument("variable %s is %s in the graph but %s in the checkpoint (key %r%s)"
                                      % (node.name, want.name, dtypes[key].name, key,
                                         ", which var_map maps it to" if mapped else ""),
                                      "ERROR_REASON_VARIABLE_MISMATCH", variable=node.name,
                                      **({"field": "options.var_map"} if mapped else {}))
        shape = tf.TensorShape(node.attr["shape"].shape) if "shape" in node.attr else tf.TensorShape(None)
        if not shape.is_compatible_with(array.shape):
            where = "its value"
            mapped = node.name in var_map
            if not ((include and node.name not in include) or node.name in exclude):
                where = "checkpoint key %s%s" % (key, (", the average (options.ema) of the key var_map maps it to"
                                                       if key.endswith(EMA_SUFFIX) and spec.ema else
                                                       ", which var_map maps it to") if mapped else "")
            raise InvalidArgument("variable %s has shape %s in the graph but %s in %s"
                                  % (node.name, [d if d is not None else -1 for d in shape.as_list()]
                                     if shape.rank is not None else "of unknown rank", list(array.shape), where),
                                  "ERROR_REASON_VARIABLE_MISMATCH", variable=node.name,
                                  **({"field": "options.var_map"} if mapped else {}))
        values[node.name] = (np.asarray(array, dtype=want.as_numpy_dtype), want.as_datatype_enum)
        progress("read %s" % node.name, 0.3 + 0.3 * (i + 1) / max(1, len(variables)))
    if missing:
        unused = sorted(k for k in dtypes if k not in used_keys and k != "_CHECKPOINTABLE_OBJECT_GRAPH")
        lacking = [m.split(" ")[0] for m in missing]
        fixes = []
        if unused:
            fixes.append("map graph variables to the unused keys (options.var_map GRAPH_VAR=KEY)")
        partial = computed_from(graph_def, [n for n in names if n not in lacking], lacking)
        if partial:  # a partial save (the Saver was given some variables): what it can freeze
            fixes.append("freeze what the saved variables compute alone (options.outputs %s)" % ",".join(partial))
        constant = []
        for name in lacking:
            try:
                initial_value(name, full_graph_def)
                constant.append(name)
            except FailedPrecondition:
                pass
        if constant == lacking:
            fixes.append("freeze them at their initial values (options.exclude_variables %s)" % ",".join(lacking[:10]))
        fixes.append("upload the checkpoint this graph was trained with")
        raise FailedPrecondition(
            "the outputs need %d variable(s) the checkpoint has no value for: %s. Checkpoint keys not used by "
            "any graph variable: %s. Either %s." % (len(missing), ", ".join(missing[:10]),
                                                    ", ".join(unused[:20]) + (" ..." if len(unused) > 20 else "") or
                                                    "none", "; or ".join(fixes)),
            "ERROR_REASON_VARIABLE_VALUE_MISSING", variables=",".join(lacking[:20]), outputs_partial=",".join(partial))
    if no_shadow:
        warnings.append("ema: no ExponentialMovingAverage shadow for %s; their raw values were used"
                        % ", ".join(no_shadow[:10]))
    if not spec.ema:  # the averages were saved, so they are likely what the model deploys: say so
        # A variable restored from a shadow key (a Saver given ema.variables_to_restore() wrote the
        # averages under its name) already holds the averages: nothing to say of it.
        restored_from = {n: (KeyRef(var_map[n]) if n in var_map else (mapping.get(n) or KeyRef(n))).key
                         for n in names}
        shadowed = [n for n in names if holds_averages(n, restored_from[n], shadow_key, average_keys, dtypes)]
        if shadowed:
            warnings.append("the checkpoint holds moving averages (ExponentialMovingAverage) of %s; the frozen "
                            "graph has their raw values. options.ema freezes the averages instead (what a model "
                            "trained with them usually deploys)" % ", ".join(shadowed[:10]))
    return values, ema_used, warnings
