"""The tensorflowsharp target (Target TARGET_TENSORFLOWSHARP): make a frozen graph load and run in libtensorflow 1.15.0,
the runtime the TensorFlowSharp package bundles.

TF 2.x adds attributes (MatMul's grad_a/grad_b, FusedBatchNormV3's
exponential_avg_factor, Conv2D's explicit_paddings...) and ops that 1.15 rejects.
This pass, on the graph and every function in its library:
  1. drops attributes that hold this TensorFlow's default value, when 1.15 either does
     not know the attribute or has the same default (so nothing 1.15 requires goes);
  2. rewrites ops 1.15 lacks to an exact 1.15 equivalent where one exists, and grouped
     convolutions (a Conv2D whose input has a multiple of its filter's input depth,
     Keras' ``groups=``; 1.15 runs none on CPU) into one convolution per group;
  3. checks every op and attribute against TF 1.15's op registry, taken from the real
     1.15 runtime and kept as data (data/tf115_ops.json, tools/dump_op_registry.py),
     and fails with FAILED_PRECONDITION listing each offending node otherwise.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, List, Optional, Tuple

from google.protobuf import text_format
from tensorflow.core.framework import attr_value_pb2
from tensorflow.python.framework import op_def_registry

from .errors import FailedPrecondition

_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")


@dataclass(frozen=True)
class Runtime:
    """An older TensorFlow runtime a target loads in: its op registry (data/FILE) and names."""

    target: str  # the target option's name
    data: str
    who: str  # whose runtime, for messages
    enum_name: str


TF115 = Runtime("tensorflowsharp", "tf115_ops.json", "TensorFlowSharp's libtensorflow", "TARGET_TENSORFLOWSHARP")
# ML.NET's Microsoft.ML.TensorFlow and TensorFlow.NET 0.20-0.30 (SciSharp.TensorFlow.Redist 2.3.1)
TF23 = Runtime("mlnet", "tf23_ops.json", "ML.NET / TensorFlow.NET's TensorFlow", "TARGET_MLNET")
RUNTIMES = {r.target: r for r in (TF115, TF23)}


@lru_cache(maxsize=4)
def registry(runtime: Runtime = TF115) -> Tuple[str, Dict[str, Dict[str, Optional[str]]]]:
    with open(os.path.join(_DATA, runtime.data)) as fh:
        data = json.load(fh)
    return data["tensorflow_version"], data["ops"]


def _default_115(op: str, attr: str, runtime: Runtime = TF115) -> Optional[attr_value_pb2.AttrValue]:
    text = registry(runtime)[1].get(op, {}).get(attr)
    if text is None:
        return None
    value = attr_value_pb2.AttrValue()
    text_format.Parse(text, value)
    return value


def _rewrite(node, runtime: Runtime = TF115) -> Optional[str]:
    """Exact older equivalents of newer ops. Returns a note when the node was rewritten."""
    ops115 = registry(runtime)[1]
    if node.op in ops115:
        return None
    if node.op == "BatchMatMulV3":
        ta, tb, tout = (node.attr[k].type for k in ("Ta", "Tb", "Tout"))
        if ta == tb == tout and "BatchMatMulV2" in ops115:
            for k in ("Ta", "Tb", "Tout"):
                del node.attr[k]
            node.attr["T"].type = ta
            node.op = "BatchMatMulV2"
            return "BatchMatMulV3 -> BatchMatMulV2"
    return None


def _strip_defaults(node, runtime: Runtime = TF115) -> None:
    op_def = op_def_registry.get(node.op)
    if op_def is None:
        return
    for attr_def in op_def.attr:
        name = attr_def.name
        if name not in node.attr or not attr_def.HasField("default_value"):
            continue
        if node.attr[name] != attr_def.default_value:
            continue
        known_115 = name in registry(runtime)[1].get(node.op, {})
        if not known_115 or _default_115(node.op, name, runtime) == attr_def.default_value:
            del node.attr[name]


def _visit_all(graph_def, visit) -> None:
    for node in graph_def.node:
        visit(node, "")
    for func in graph_def.library.function:
        for node in func.node_def:
            visit(node, "%s/" % func.signature.name)


def strip_defaults(graph_def) -> None:
    """Drop attributes that hold this TensorFlow's default value where TF 1.15 does not
    know them or has the same default (what SavedModel's strip_default_attrs does, made
    safe for 1.15). Applied to every frozen graph: this TensorFlow fills them back in."""
    _visit_all(graph_def, lambda node, where: _strip_defaults(node))


def incompatibilities(graph_def, runtime: Runtime = TF115) -> List[str]:
    """Why the runtime (TF 1.15, TensorFlowSharp's, by default) would refuse the graph as it
    is, node by node."""
    version, ops115 = registry(runtime)
    functions = {f.signature.name for f in graph_def.library.function}
    offending: List[str] = []

    def visit(node, where: str):
        if node.op in functions:
            return
        if node.op not in ops115:
            offending.append("%s%s (op %s is not in TensorFlow %s)" % (where, node.name, node.op, version))
            return
        known = ops115[node.op]
        for attr in node.attr:
            if attr.startswith("_"):
                continue
            if attr not in known:
                offending.append("%s%s (op %s: attribute '%s' = %s is unknown to TensorFlow %s)" % (
                    where, node.name, node.op, attr, text_format.MessageToString(node.attr[attr], as_one_line=True),
                    version))
        for attr, default in known.items():
            if default is None and attr not in node.attr:
                offending.append("%s%s (op %s: TensorFlow %s requires attribute '%s')" % (
                    where, node.name, node.op, version, attr))

    _visit_all(graph_def, visit)
    for func in graph_def.library.function:
        for node, groups, _ in _grouped_convolutions(func):
            offending.append("%s/%s (a grouped Conv2D, %d groups: TensorFlow %s runs none on CPU; the "
                             "%s target splits it)" % (func.signature.name, node.name, groups, version, runtime.target))
    return offending


def _grouped_convolutions(func) -> List[Tuple[object, int, int]]:
    """(node, groups, channel axis) for each Conv2D in a function body whose input depth
    is a multiple (over 1) of its filter's input depth, read from the function's
    argument shapes (Keras runs grouped convolutions in a function of their own)."""
    shapes: Dict[str, List[int]] = {}
    for i, arg in enumerate(func.signature.input_arg):
        if i in func.arg_attr and "_output_shapes" in func.arg_attr[i].attr:
            listed = func.arg_attr[i].attr["_output_shapes"].list.shape
            if listed and not listed[0].unknown_rank:
                shapes[arg.name] = [d.size for d in listed[0].dim]
    found = []
    for node in func.node_def:
        if node.op != "Conv2D" or len(node.input) < 2:
            continue
        x, k = (shapes.get(i.split(":")[0]) for i in node.input[:2])
        axis = 1 if "data_format" in node.attr and node.attr["data_format"].s == b"NCHW" else 3
        if not x or not k or len(x) != 4 or len(k) != 4:
            continue
        depth, per_group = x[axis], k[2]
        if depth > 0 and per_group > 0 and depth != per_group and depth % per_group == 0:
            found.append((node, depth // per_group, axis))
    return found


def _split_grouped(func, node, groups: int, axis: int) -> None:
    """Replace a grouped Conv2D by Split (input, filter) + one Conv2D per group + ConcatV2,
    which keeps the node's name and output (``NAME:output:0``): the same values."""
    from tensorflow.python.framework import tensor_util

    def const(name, value):
        c = func.node_def.add(name=name, op="Const")
        c.attr["dtype"].type = 3  # DT_INT32
        c.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value, dtype="int32"))
        return "%s:output:0" % name

    base = node.name
    x, k = node.input[0], node.input[1]
    t = attr_value_pb2.AttrValue()
    t.CopyFrom(node.attr["T"])  # a copy: the node's attributes are cleared below
    split_x = func.node_def.add(name=base + "/group_inputs", op="Split", input=[const(base + "/group_axis", axis), x])
    split_k = func.node_def.add(name=base + "/group_filters", op="Split", input=[const(base + "/filter_axis", 3), k])
    for split in (split_x, split_k):
        split.attr["num_split"].i = groups
        split.attr["T"].CopyFrom(t)
    parts = []
    for g in range(groups):
        conv = func.node_def.add(name="%s/group_%d" % (base, g), op="Conv2D",
                                 input=["%s:output:%d" % (split_x.name, g), "%s:output:%d" % (split_k.name, g)])
        for key, value in node.attr.items():
            conv.attr[key].CopyFrom(value)
        parts.append("%s:output:0" % conv.name)
    axis_ref = const(base + "/concat_axis", axis)
    node.op = "ConcatV2"
    del node.input[:]
    node.input.extend(parts + [axis_ref])
    node.attr.clear()
    node.attr["N"].i = groups
    node.attr["T"].CopyFrom(t)
    node.attr["Tidx"].type = 3


def make_loadable(graph_def, runtime: Runtime = TF115) -> List[str]:
    """Rewrite ``graph_def`` in place so that the runtime (TensorFlowSharp's libtensorflow
    1.15 by default) loads it; returns notes for the manifest's warnings. Raises
    FailedPrecondition naming every node that has no exact equivalent there."""
    version, _ = registry(runtime)
    notes: List[str] = []

    def rewrite(node, where: str):
        note = _rewrite(node, runtime)
        if note:
            notes.append("%s%s: %s" % (where, node.name, note))
        _strip_defaults(node, runtime)

    for func in graph_def.library.function:
        for node, groups, axis in _grouped_convolutions(func):
            _split_grouped(func, node, groups, axis)
            notes.append("%s/%s: grouped convolution (%d groups) -> one Conv2D per group" % (
                func.signature.name, node.name, groups))
    _visit_all(graph_def, rewrite)
    offending = incompatibilities(graph_def, runtime)
    if offending:
        raise FailedPrecondition(
            "the frozen graph cannot run on %s %s: %s. These ops have no exact %s equivalent; build the model from "
            "ops %s has, or run it on a newer TensorFlow (no target)."
            % (runtime.who, version, "; ".join(offending[:20]) + (" ..." if len(offending) > 20 else ""), version,
               version), "ERROR_REASON_TARGET_INCOMPATIBLE", target=runtime.enum_name)
    return notes
