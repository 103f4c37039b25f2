"""Training switches (is_training, keep_prob, Keras learning phase...): find
them, bind them to constants, and fold the conditionals they drive so that the
training branch (batch statistics, moving-average updates, dropout) is gone.

Binding replaces the placeholder node by a Const of the same name. Folding:
  v2 `If`/`StatelessIf` with a constant predicate becomes a call of the chosen
  branch (`StatefulPartitionedCall`), so the other branch's function drops out;
  v1 `Switch`/`RefSwitch` with a constant predicate forwards its live port to its
  data input, the dead port's consumers are removed, and each `Merge` left with
  one live input becomes an `Identity` of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple, Union

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import tensor_util

from .errors import InvalidArgument
from .graph import attr_functions, consumers, node_of, nodes_by_name
from .oproles import MERGE_OPS, PLACEHOLDER_OPS, SWITCH_OPS, VARIABLE_OPS, is_random
from .words import article

_FALSE_SWITCH = re.compile(r"^(is_?training|training|is_?train|train_?phase|phase_?train|phase|"
                           r"keras_learning_phase|learning_phase|train_?mode|is_?train_?mode)$", re.I)
_KEEP_PROB = re.compile(r"^(keep_?prob(ability)?|dropout_?keep(_?prob)?|keep_?rate)$", re.I)
_DROP_RATE = re.compile(r"^(dropout_?rate|drop_?rate|dropout)$", re.I)


BOUND_BY_OPTION = "bound by the bind option"


@dataclass
class Switch:
    name: str  # node name
    dtype: int
    inference_value: Optional[object]  # None: not a training switch by name


def _scalar_or_unknown(node) -> bool:
    if "shape" not in node.attr:
        return True
    shape = node.attr["shape"].shape
    return shape.unknown_rank or len(shape.dim) == 0


def variable_switches(graph_def) -> List[Switch]:
    """Scalar bool variables named as a training switch (tflearn keeps its training mode in
    ``is_training``, a variable its fit sets True): the same switch as a placeholder's, so
    their value in a frozen graph is the inference value, not the one saved mid-training."""
    out = []
    for node in graph_def.node:
        if node.op in VARIABLE_OPS and node.attr["dtype"].type == tf.bool.as_datatype_enum \
                and _scalar_or_unknown(node) and _FALSE_SWITCH.match(node.name.split("/")[-1]):
            out.append(Switch(node.name, node.attr["dtype"].type, False))
    return out


def find_switches(graph_def) -> List[Switch]:
    """Scalar bool/float/int placeholders, with the inference value of those
    whose name says they are a training switch."""
    out = []
    by_name = users = None
    for node in graph_def.node:
        if node.op not in PLACEHOLDER_OPS or not _scalar_or_unknown(node):
            continue
        if by_name is None:
            by_name, users = nodes_by_name(graph_def), consumers(graph_def)
        dtype = node.attr["dtype"].type
        base = node.name.split("/")[-1]
        value = None
        if dtype == tf.bool.as_datatype_enum and _FALSE_SWITCH.match(base):
            value = False
        elif dtype in (tf.int32.as_datatype_enum, tf.int64.as_datatype_enum) and re.match(
                r"^(keras_)?learning_phase$", base, re.I):
            value = 0
        elif dtype in (tf.float32.as_datatype_enum, tf.float64.as_datatype_enum, tf.float16.as_datatype_enum):
            if _KEEP_PROB.match(base) or _DROP_RATE.match(base):  # a dropout switch by its name; which
                role = _dropout_role(node.name, by_name, users)  # kind, by what the graph does with it
                value = 1.0 if role == "keep" or (role is None and _KEEP_PROB.match(base)) else 0.0
        if value is not None or dtype == tf.bool.as_datatype_enum:
            out.append(Switch(node.name, dtype, value))
    return out


def _dropout_role(name: str, by_name, users) -> Optional[str]:
    """What the graph does with a float placeholder in dropout, whatever its name ("dropout" holds
    a keep probability in many scripts): "rate" when a random draw is compared with it as it is
    (the fraction dropped), "keep" when with ``1 - it``, or when it is added to a random draw
    (TensorFlow 1's ``floor(keep_prob + uniform)``); None when no dropout reads it."""
    def values_of(n, depth=0):  # n and what hands its value on unchanged
        yield n
        if depth < 4:
            for u in sorted(users.get(n, ())):
                if by_name[u].op in ("Identity", "Cast", "Snapshot") and by_name[u].input[0].split(":")[0] == n:
                    yield from values_of(u, depth + 1)

    def random_side(n, depth=0):
        node = by_name.get(n.lstrip("^").split(":")[0])
        if node is None or depth > 4:
            return False
        return is_random(node.op) or any(random_side(i, depth + 1) for i in node.input if not i.startswith("^"))

    def compared_with_random(n):
        for u in users.get(n, ()):
            node = by_name[u]
            others = [i for i in node.input if not i.startswith("^") and i.split(":")[0] != n]
            if node.op in ("GreaterEqual", "Greater", "Less", "LessEqual") and any(random_side(i) for i in others):
                return True
        return False

    def one_minus(n):
        for u in users.get(n, ()):
            node = by_name[u]
            if node.op == "Sub" and len(node.input) == 2 and node.input[1].split(":")[0] == n \
                    and _const_value(node.input[0], by_name) == 1:
                yield u
    for v in values_of(name):
        if compared_with_random(v):
            return "rate"
        if any(compared_with_random(m) for m in one_minus(v)):
            return "keep"
        for u in users.get(v, ()):
            node = by_name[u]
            if node.op in ("Add", "AddV2") and any(random_side(i) for i in node.input
                                                   if not i.startswith("^") and i.split(":")[0] != v):
                return "keep"
    return None


def _coerce(value: Union[bool, float], dtype_enum: int, name: str):
    """A typed binding (bool or number) as a value of the placeholder's dtype."""
    dtype = tf.dtypes.as_dtype(dtype_enum)
    if dtype == tf.bool:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
    elif dtype.is_integer:
        if not isinstance(value, bool) and float(value).is_integer():
            return int(value)
    elif dtype.is_floating:
        if not isinstance(value, bool):
            return float(np.asarray(value, dtype=dtype.as_numpy_dtype))
    if isinstance(value, bool) and not dtype == tf.bool:  # (yes/no/true/false all arrive as a boolean)
        raise InvalidArgument("bind: %s is a %s switch, and the value given reads as the boolean %s (true, false, "
                              "yes and no are booleans): give a number, e.g. %s=%s"
                              % (name, dtype.name, json.dumps(value), name, "1" if dtype.is_integer else "1.0"),
                              "ERROR_REASON_INVALID_OPTION", field="options.bind", name=name)
    raise InvalidArgument("bind: %s=%s is not a %s value%s" % (name, json.dumps(value), dtype.name,
                                                              ": give true or false" if dtype == tf.bool else ""),
                          "ERROR_REASON_INVALID_OPTION", field="options.bind", name=name)


def bind(graph_def, binds: Dict[str, Union[bool, float, None]], defaults: Optional[Dict[str, bool]] = None) -> List[dict]:
    """Replace switch placeholders by constants, in place; a None value keeps a
    switch unbound; ``defaults``: switches bound to their default (``batch_norm_defaults``).
    Returns the bindings made."""
    by_name = nodes_by_name(graph_def)
    switch_names = [s.name for s in find_switches(graph_def)]
    for name in binds:
        node = by_name.get(name)
        if node is not None and node.op in PLACEHOLDER_OPS and binds[name] is not None and not _scalar_or_unknown(node):
            dims = [d.size for d in node.attr["shape"].shape.dim]
            raise InvalidArgument("bind: %s is an input of shape %s, not a switch: bind takes scalar switches (a "
                                  "training flag, a rate); feed %s when the frozen graph runs"
                                  % (name, dims, name), "ERROR_REASON_INVALID_OPTION", field="options.bind",
                                  name=name)
        if name not in by_name or by_name[name].op not in PLACEHOLDER_OPS:
            what = "is not among the nodes the outputs need" if name not in by_name else \
                "is %s, not a placeholder" % article(by_name[name].op)
            raise InvalidArgument("bind: %s %s; switches the outputs depend on: %s"
                                  % (name, what, ", ".join(switch_names) or "none"),
                                  "ERROR_REASON_NAME_NOT_IN_GRAPH", field="options.bind", name=name,
                                  suggestions=",".join(switch_names[:10]))
    made = []
    chosen: Dict[str, Tuple[object, str]] = {}
    for sw in find_switches(graph_def):
        if sw.inference_value is not None and sw.name not in binds:
            chosen[sw.name] = (sw.inference_value, "inference value of a training switch")
    for name, value in (defaults or {}).items():
        chosen[name] = (value, BATCH_NORM_DEFAULT)
    for name, value in binds.items():
        if value is None:
            chosen.pop(name, None)
        else:
            chosen[name] = (_coerce(value, by_name[name].attr["dtype"].type, name), BOUND_BY_OPTION)
    for node in graph_def.node:
        if node.name not in chosen:
            continue
        value, reason = chosen[node.name]
        dtype_enum = node.attr["dtype"].type
        shape = node.attr["shape"].shape if "shape" in node.attr else None
        array = np.asarray(value, dtype=tf.dtypes.as_dtype(dtype_enum).as_numpy_dtype)
        if shape is not None and not shape.unknown_rank:
            want = [d.size for d in shape.dim]
            if list(array.shape) != want and all(d >= 0 for d in want):
                array = np.broadcast_to(array, want)
        control = [i for i in node.input if i.startswith("^")]
        node.ClearField("input")
        node.input.extend(control)
        node.op = "Const"
        node.attr.clear()
        node.attr["dtype"].type = dtype_enum
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(array, dtype_enum))
        made.append({"name": node.name + ":0", "value": array.tolist(), "reason": reason})
    return made


def _const_value(name: str, by_name, depth: int = 0):
    node = by_name.get(node_of(name))
    if node is None or depth > 20:
        return None
    if node.op == "Const":
        arr = tensor_util.MakeNdarray(node.attr["value"].tensor)
        return arr.reshape(()).item() if arr.size == 1 else None
    if node.op in ("Identity", "Snapshot", "Squeeze", "Reshape", "ExpandDims") and node.input:
        # (a one-element value in another shape is the same value: tf.cond squeezes its predicate
        # before a v2 If reads it)
        return _const_value(node.input[0], by_name, depth + 1)
    data = [i for i in node.input if not i.startswith("^")]
    if node.op in _LOGIC and len(data) == _LOGIC[node.op][0]:  # (a predicate computed from constants:
        values = [_const_value(i, by_name, depth + 1) for i in data]  # logical_not(is_eval) once bound)
        if all(v is not None for v in values):
            return _LOGIC[node.op][1](*values)
    return None


_LOGIC = {"LogicalNot": (1, lambda a: not a), "LogicalAnd": (2, lambda a, b: bool(a and b)),
          "LogicalOr": (2, lambda a, b: bool(a or b)), "Equal": (2, lambda a, b: a == b),
          "NotEqual": (2, lambda a, b: a != b), "Less": (2, lambda a, b: a < b), "Greater": (2, lambda a, b: a > b),
          "LessEqual": (2, lambda a, b: a <= b), "GreaterEqual": (2, lambda a, b: a >= b),
          "Cast": (1, lambda a: a)}


def inline_call(graph_def, call_name: str) -> None:
    """Replace a (Stateful)PartitionedCall node by its function's body, in place.
    Body nodes become CALL/NODE; the call's outputs are rewired to the body's results."""
    from tensorflow.python.framework import function_def_to_graph

    by_name = nodes_by_name(graph_def)
    call = by_name[call_name]
    fdef = next(f for f in graph_def.library.function if f.signature.name == call.attr["f"].func.name)
    body, flat = function_def_to_graph.function_def_to_graph_def(fdef)
    data_inputs = [i for i in call.input if not i.startswith("^")]
    control = [i for i in call.input if i.startswith("^")]
    args = {a.name: data_inputs[k] for k, a in enumerate(fdef.signature.input_arg)}

    def outer(ref: str) -> str:
        if ref.startswith("^"):
            return "^" + outer(ref[1:]).split(":")[0]
        node, _, idx = ref.partition(":")
        if node in args:
            return args[node]
        return "%s/%s%s" % (call_name, node, (":" + idx) if idx else "")

    new_nodes = []
    for node in body.node:
        if node.name in args and node.op == "Placeholder":
            continue
        copy = type(node)()
        copy.CopyFrom(node)
        copy.name = "%s/%s" % (call_name, node.name)
        refs = [outer(i) for i in node.input]
        if not [r for r in refs if not r.startswith("^")]:
            refs += control  # keep the call's ordering for source nodes
        del copy.input[:]
        copy.input.extend(refs)
        new_nodes.append(copy)
    results = []
    for arg in fdef.signature.output_arg:
        ret = fdef.ret[arg.name]
        results.append(outer(flat.get(ret, ret)))
    for node in graph_def.node:
        if node.name == call_name:
            continue
        fixed = []
        for inp in node.input:
            if inp.startswith("^") and inp[1:] == call_name:
                fixed.extend("^" + node_of(r) for r in results)
            elif node_of(inp) == call_name and not inp.startswith("^"):
                idx = int(inp.partition(":")[2] or 0)
                fixed.append(results[idx])
            else:
                fixed.append(inp)
        del node.input[:]
        node.input.extend(fixed)
    keep = [n for n in graph_def.node if n.name != call_name]
    del graph_def.node[:]
    graph_def.node.extend(keep + new_nodes)


def fold_conditionals(graph_def) -> int:
    """Fold If/StatelessIf and v1 Switch whose predicate is now a constant. In place; returns folds made.
    A folded If's chosen branch is inlined into the graph."""
    by_name = nodes_by_name(graph_def)
    folded = 0
    calls = []
    for node in graph_def.node:
        if node.op in ("If", "StatelessIf") and node.input:
            pred = _const_value(node.input[0], by_name)
            if pred is None:
                continue
            branch = node.attr["then_branch" if pred else "else_branch"].func.name
            data = list(node.input[1:])
            for attr in ("then_branch", "else_branch", "Tcond", "output_shapes", "_lower_using_switch_merge",
                         "_read_only_resource_inputs"):
                if attr in node.attr:
                    del node.attr[attr]
            node.op = "StatefulPartitionedCall"
            node.ClearField("input")
            node.input.extend(data)
            node.attr["f"].func.name = branch
            calls.append(node.name)
            folded += 1
    for name in calls:
        inline_call(graph_def, name)
    folded += _fold_v1(graph_def)
    return folded


def _fold_v1(graph_def) -> int:
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    live_port: Dict[str, int] = {}
    for node in graph_def.node:
        if node.op in SWITCH_OPS and len(node.input) >= 2:
            pred = _const_value(node.input[1], by_name)
            if pred is not None:
                live_port[node.name] = 1 if pred else 0
    if not live_port:
        return 0

    def port(inp: str) -> Tuple[str, int]:
        name, _, idx = inp.lstrip("^").partition(":")
        return name, int(idx or 0)

    dead: Set[str] = set()
    changed = True
    while changed:
        changed = False
        for node in graph_def.node:
            if node.name in dead:
                continue
            data_inputs = [i for i in node.input if not i.startswith("^")]

            def is_dead(inp):
                src, idx = port(inp)
                return src in dead or (src in live_port and idx != live_port[src])

            if node.op in MERGE_OPS:
                now_dead = bool(data_inputs) and all(is_dead(i) for i in data_inputs)
            else:  # (a control input from the dead branch kills too: a constant of that branch, which
                # TensorFlow ties to the branch's pivot by a control edge only)
                now_dead = (any(is_dead(i) for i in data_inputs)
                            or any(i.lstrip("^") in dead for i in node.input if i.startswith("^")))
            if now_dead:
                dead.add(node.name)
                changed = True
    for node in graph_def.node:
        if node.name in dead:
            continue
        new_inputs = []
        for inp in node.input:
            src, idx = port(inp)
            if inp.startswith("^"):
                if src not in dead:
                    new_inputs.append(inp)
                continue
            if src in live_port and idx == live_port[src]:
                new_inputs.append(by_name[src].input[0])  # forward the Switch's data
            else:
                new_inputs.append(inp)
        del node.input[:]
        node.input.extend(new_inputs)
        if node.op in MERGE_OPS:
            live = [i for i in node.input if not i.startswith("^") and port(i)[0] not in dead]
            value_index_used = any(port(i) == (node.name, 1) for u in users.get(node.name, ())
                                   for i in by_name[u].input)
            if len(live) == 1 and not value_index_used:
                control = [i for i in node.input if i.startswith("^")]
                del node.input[:]
                node.input.extend(live + control)
                node.op = "Identity"
                if "N" in node.attr:
                    del node.attr["N"]
    keep = [n for n in graph_def.node if n.name not in dead]
    del graph_def.node[:]
    graph_def.node.extend(keep)
    return len(live_port)


def called_functions(graph_def) -> Set[str]:
    """The library functions the graph's nodes call, directly or through other functions."""
    library = {f.signature.name: f for f in graph_def.library.function}
    called: Set[str] = set()
    stack = list(graph_def.node)
    while stack:
        node = stack.pop()
        for name in [node.op] + attr_functions(node.attr):
            if name in library and name not in called:
                called.add(name)
                stack.extend(library[name].node_def)
    return called


def training_batch_norms(graph_def, called_only: bool = False) -> List[str]:
    """Fused batch norms still in training mode (batch statistics), in the graph or its functions
    (``called_only``: only the functions the graph still calls)."""
    found = []
    for node in graph_def.node:
        if node.op.startswith("FusedBatchNorm") and node.attr["is_training"].b:
            found.append(node.name)
    called = called_functions(graph_def) if called_only else None
    for func in graph_def.library.function:
        if called is not None and func.signature.name not in called:
            continue
        for node in func.node_def:
            if node.op.startswith("FusedBatchNorm") and node.attr["is_training"].b:
                found.append("%s/%s" % (func.signature.name, node.name))
    return found


BATCH_NORM_DEFAULT = "its default, which selects batch norm's moving statistics (the batch statistics its other value selects update variables, which freezing makes constants)"


def batch_norm_defaults(graph_def, binds: Dict[str, Union[bool, float, None]]) -> Dict[str, bool]:
    """Bool switches with a default (``placeholder_with_default(False, name="train_bn")``), whatever
    their name, that the bind option leaves alone and whose default takes every batch norm they
    select out of training mode: bound to that default. Unfed, the graph computes with that value
    already; the other value needs the moving-average updates a frozen graph cannot make."""
    if not training_batch_norms(graph_def, called_only=True):
        return {}
    by_name = nodes_by_name(graph_def)

    def left(extra):
        trial = type(graph_def)()
        trial.CopyFrom(graph_def)
        bind(trial, dict(binds, **extra))
        fold_conditionals(trial)
        return set(training_batch_norms(trial, called_only=True))

    before = left({})
    chosen: Dict[str, bool] = {}
    for sw in find_switches(graph_def):
        node = by_name[sw.name]
        if (sw.inference_value is not None or sw.name in binds or node.op != "PlaceholderWithDefault"
                or sw.dtype != tf.bool.as_datatype_enum or not node.input):
            continue
        default = _const_value(node.input[0], by_name)
        if isinstance(default, bool) and before and len(left(dict(chosen, **{sw.name: default}))) < len(before):
            chosen[sw.name] = default
            before = left(chosen)
    return chosen


__all__ = ["find_switches", "bind", "BOUND_BY_OPTION", "BATCH_NORM_DEFAULT", "batch_norm_defaults",
           "called_functions", "fold_conditionals", "training_batch_norms", "Switch"]
