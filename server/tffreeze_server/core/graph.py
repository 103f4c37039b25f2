"""GraphDef helpers: names, lookups and edges, read as data (nothing is run)."""

from __future__ import annotations

import difflib
import re
from typing import Callable, Dict, Iterable, List, Optional, Set, Tuple

from .errors import InvalidArgument
from .oproles import PLACEHOLDER_OPS, VARIABLE_OPS

# A value this large is not copied around: spliced from the data file, stood in by a
# placeholder in the graphs TensorFlow imports for checks and folding.
LARGE_BYTES = 1 << 16
TENSOR_RE = re.compile(r"^(?P<node>[^:^]+)(?::(?P<index>\d+))?$")


def attr_functions(attr_map) -> List[str]:
    """Functions named by attributes (While bodies, If branches, call targets), in
    attribute-name order."""
    out: List[str] = []
    for key in sorted(attr_map):
        value = attr_map[key]
        if value.HasField("func"):
            out.append(value.func.name)
        elif value.HasField("list"):
            out.extend(f.name for f in value.list.func)
    return out


def functions_called(node, library) -> List[str]:
    """The ``library`` functions a node calls: its op when that is one, then those
    its attributes name."""
    return [name for name in [node.op] + attr_functions(node.attr) if name in library]


def node_of(input_name: str) -> str:
    """'^a', 'a:1', 'a' -> 'a'."""
    return input_name.lstrip("^").split(":")[0]


def split_tensor(name: str) -> Tuple[str, int]:
    """'x' -> ('x', 0); 'x:1' -> ('x', 1). Raises InvalidArgument when malformed."""
    m = TENSOR_RE.match(name.strip())
    if not m:
        raise InvalidArgument("%r is not a tensor name; write NODE or NODE:INDEX, e.g. 'logits' or 'logits:0'"
                              % name[:200], "ERROR_REASON_INVALID_NAME", name=name[:200])
    return m.group("node"), int(m.group("index") or 0)


def tensor_name(name: str) -> str:
    """An input or collection entry as a tensor name: '^a' / 'a' -> 'a:0', 'a:1' stays."""
    name = name.lstrip("^")
    return name if ":" in name else name + ":0"


def output_dtype_enum(node, index: int = 0) -> int:
    """The DataType of ``node:index`` read off the NodeDef (its op's output argument,
    else the usual type attributes); 0 when unknown. Nothing is imported."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    if op_def is not None and index < len(op_def.output_arg):
        arg = op_def.output_arg[index]
        enum = arg.type or (node.attr[arg.type_attr].type if arg.type_attr and arg.type_attr in node.attr else 0)
        if enum:
            return enum
    for key in ("dtype", "T", "out_type", "DstT"):
        if key in node.attr and node.attr[key].type:
            return node.attr[key].type
    return 0


def fixed_output_count(node) -> Optional[int]:
    """How many outputs the node's op has when its OpDef says so without attributes, else None."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    if op_def is None or any(a.number_attr or a.type_list_attr for a in op_def.output_arg):
        return None
    return len(op_def.output_arg)


def output_types(node) -> Optional[List[int]]:
    """The DataType of every output of ``node``, from its OpDef and attributes (lists and
    repeated outputs counted); None when the op or a type is not known."""
    from tensorflow.python.framework import op_def_registry

    op_def = op_def_registry.get(node.op)
    if op_def is None:
        return None
    types: List[int] = []
    for arg in op_def.output_arg:
        if arg.type_list_attr:
            if arg.type_list_attr not in node.attr:
                return None
            types += list(node.attr[arg.type_list_attr].list.type)
            continue
        enum = arg.type or (node.attr[arg.type_attr].type if arg.type_attr in node.attr else 0)
        if not enum:
            return None
        if arg.number_attr:
            if arg.number_attr not in node.attr:
                return None
            types += [enum] * int(node.attr[arg.number_attr].i)
        else:
            types.append(enum)
    return types


def output_shape_proto(node, index: int = 0):
    """The TensorShapeProto of ``node:index`` recorded on the NodeDef (a placeholder's
    ``shape``, else ``_output_shapes``), or None."""
    if index == 0 and "shape" in node.attr:
        return node.attr["shape"].shape
    if "_output_shapes" in node.attr and index < len(node.attr["_output_shapes"].list.shape):
        return node.attr["_output_shapes"].list.shape[index]
    return None


def nodes_by_name(graph_def) -> Dict[str, object]:
    return {n.name: n for n in graph_def.node}


def consumers(graph_def) -> Dict[str, Set[str]]:
    """node -> names of nodes that take it as a data or control input."""
    out: Dict[str, Set[str]] = {n.name: set() for n in graph_def.node}
    for n in graph_def.node:
        for i in n.input:
            out.setdefault(node_of(i), set()).add(n.name)
    return out


def ancestors(graph_def, roots: Iterable[str]) -> Set[str]:
    """Every node the roots depend on (data and control inputs), roots included."""
    by_name = nodes_by_name(graph_def)
    seen: Set[str] = set()
    stack = [r for r in roots if r in by_name]
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(node_of(i) for i in by_name[name].input if node_of(i) in by_name)
    return seen


def reach(roots: Iterable[str], step: Callable[[str], Iterable[str]]) -> Set[str]:
    """Every name reached from ``roots`` by repeatedly taking ``step(name)`` (roots included)."""
    seen: Set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack.extend(n for n in step(name) if n not in seen)
    return seen


def resolve_names(names: List[str], graph_def, what: str) -> List[str]:
    """Normalise user-given names to tensor names 'node:i', checking they exist.
    ``what`` is the FreezeOptions field ("outputs", "inputs").

    A miss raises InvalidArgument with the closest node names."""
    by_name = nodes_by_name(graph_def)
    out = []
    for raw in names:
        node, index = split_tensor(raw)
        if node not in by_name:
            lowered: Dict[str, str] = {}
            for n in by_name:  # case aside ('X' for 'x'), then the closest spellings
                lowered.setdefault(n.lower(), n)
            close = [lowered[c] for c in difflib.get_close_matches(node.lower(), list(lowered), n=3, cutoff=0.5)]
            hint = ("; did you mean %s?" % ", ".join(repr(c) for c in close)) if close else ""
            if not close and what == "inputs":
                holders = [n for n, d in by_name.items() if d.op in PLACEHOLDER_OPS
                           and not n.startswith(("save/", "save_"))][:10]  # (the Saver's file name)
                hint = "; its placeholders: %s." % (", ".join(holders) or "none")
            raise InvalidArgument("%s: %r is not in the graph%s Inspect the checkpoint to list candidate "
                                  "inputs and outputs." % (what, raw, hint + (" " if hint else ".")),
                                  "ERROR_REASON_NAME_NOT_IN_GRAPH", field="options." + what, name=raw,
                                  suggestions=",".join(close))
        if what == "inputs" and by_name[node].op in VARIABLE_OPS:  # (fed, it would be a resource handle)
            raise InvalidArgument("%s: %r is a variable: its value comes from the checkpoint. Name the tensor "
                                  "that reads it, or a placeholder" % (what, raw), "ERROR_REASON_INVALID_OPTION",
                                  field="options." + what, name=raw)
        out.append("%s:%d" % (node, index))
    return out
