"""Which ops an uploaded graph may hold before TensorFlow sees it.

Importing a graph is not passive: TensorFlow's shape inference evaluates
constant subgraphs while nodes are added (``import_graph_def``, the C++ shape
refiner, grappler), so ``Fill(StringToNumber(ReadFile(path)))`` would read a
server file during an import. Every graph the server hands to TensorFlow is
therefore checked first against a positive list of op kinds that only compute
on tensors (``data/safe_ops.txt``). Function calls are followed: a node whose
op is a library function, and every function-valued attribute (``While`` bodies,
``If`` branches, ``PartitionedCall`` targets) and registered gradient, is
checked the same way. Ops this TensorFlow does not register are left to the
unknown-op check (they cannot be imported, let alone run).
"""

from __future__ import annotations

import functools
import os
from typing import Iterable, List, Optional, Set, Tuple

from .errors import InvalidArgument
from .graph import attr_functions

# PrintV2 may print to the log; an output_stream naming a file would write one.
_PRINT_STREAMS = {"stderr", "stdout", "log(info)", "log(warning)", "log(error)"}
_SHOWN = 10


@functools.lru_cache(maxsize=1)
def safe_ops() -> frozenset:
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "safe_ops.txt")
    with open(path, encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip() and not line.startswith("#"))


def _registered(op: str) -> bool:
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op) is not None


def _node_problem(node) -> Optional[str]:
    if node.op not in safe_ops():
        return node.op if _registered(node.op) else None
    if node.op == "PrintV2" and "output_stream" in node.attr:
        stream = node.attr["output_stream"].s.decode("utf-8", "replace")
        if stream not in _PRINT_STREAMS:
            return "PrintV2 to %s" % stream[:60]
    return None


def unsafe_nodes(graph_def, roots: Optional[Iterable[str]] = None,
                 skip_functions: Iterable[str] = ()) -> List[Tuple[str, str]]:
    """(where, op) for every node outside the positive list in the graph's nodes
    (or only in the functions named by ``roots`` when given) and in every function
    they call. ``where`` is ``node`` or ``function/node``."""
    library = {f.signature.name: f for f in graph_def.library.function}
    gradients = {g.function_name: g.gradient_func for g in graph_def.library.gradient}
    found: List[Tuple[str, str]] = []
    seen: Set[str] = set(skip_functions)
    pending: List[str] = []

    def call(name: str) -> None:
        if name in library and name not in seen:
            seen.add(name)
            pending.append(name)
            if name in gradients:
                call(gradients[name])

    def visit(nodes, prefix: str) -> None:
        for node in nodes:
            if node.op in library:
                call(node.op)
            else:
                problem = _node_problem(node)
                if problem:
                    found.append((prefix + node.name, problem))
            for name in attr_functions(node.attr):
                call(name)

    if roots is None:
        visit(graph_def.node, "")
    else:
        for name in roots:
            call(name)
    while pending:
        func = library[pending.pop()]
        visit(func.node_def, func.signature.name + "/")
        for name in attr_functions(func.attr):
            call(name)
    return found


def refusal(found: List[Tuple[str, str]], what: str = "the graph") -> InvalidArgument:
    ops = sorted({op for _, op in found})
    shown = ", ".join("%s (%s)" % (op, where) for where, op in found[:_SHOWN])
    more = " and %d more" % (len(found) - _SHOWN) if len(found) > _SHOWN else ""
    return InvalidArgument(
        "%s holds op(s) the server does not import or run: %s%s. Only ops that compute on tensors are accepted "
        "(the list is data/safe_ops.txt in the server package); ops that read or write files, start processes, "
        "reach the network or other tasks are refused, because TensorFlow evaluates parts of a graph while "
        "importing it. If these nodes are not part of the model, choose outputs that do not need them, or cut "
        "the graph above them with inputs." % (what, shown, more),
        "ERROR_REASON_UNSAFE_OP", ops=",".join(o[:60] for o in ops[:20]),
        nodes=",".join(w[:100] for w, _ in found[:_SHOWN]))


_constant_limit = [0]  # bytes; set once per task process (tasks.py), from ServerLimits


def limit_import_constants(limit: int) -> None:
    """The largest constant an imported graph may make TensorFlow build (0: no limit).
    Each task runs in a process of its own, so this is that task's setting."""
    _constant_limit[0] = int(limit)


def check(graph_def, what: str = "the graph", roots: Optional[Iterable[str]] = None,
          skip_functions: Iterable[str] = ()) -> None:
    """Raise INVALID_ARGUMENT (ERROR_REASON_UNSAFE_OP) naming the unsafe nodes, or
    RESOURCE_EXHAUSTED (ERROR_REASON_MEMORY_LIMIT) for a constant too large to build at import."""
    found = unsafe_nodes(graph_def, roots, skip_functions)
    if found:
        raise refusal(found, what)
    check_constants(graph_def)


def check_constants(graph_def) -> None:
    """``bounds.check_import_constants`` with this task's limit."""
    from .bounds import check_import_constants

    check_import_constants(graph_def, _constant_limit[0])


def _saver_nodes(meta) -> Set[str]:
    """Top-level nodes of the saver_def's save/restore ops and what feeds them."""
    by_name = {n.name: n for n in meta.graph_def.node}
    saver = {name.split(":")[0].lstrip("^") for name in
             (meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name) if name}
    frontier = list(saver)
    while frontier:
        node = by_name.get(frontier.pop())
        for inp in (node.input if node is not None else ()):
            name = inp.lstrip("^").split(":")[0]
            if name not in saver:
                saver.add(name)
                frontier.append(name)
    return saver


def without_saver(meta):
    """The MetaGraph's GraphDef without the saver's nodes (functions kept): what a TF2
    SavedModel's top level holds besides them."""
    saver = _saver_nodes(meta)
    out = type(meta.graph_def)()
    out.CopyFrom(meta.graph_def)
    del out.node[:]
    out.node.extend(n for n in meta.graph_def.node if n.name not in saver)
    return out


def saver_only_functions(meta) -> Set[str]:
    """Functions a TF2 SavedModel reaches only from its saver_def's save/restore
    nodes. TensorFlow's Python loader restores variables with ops it builds itself
    and never calls these (they hold SaveV2/RestoreV2), so they are not checked.
    Every function the object graph names (methods, signatures, resource
    initializers) is checked, whatever its name."""
    graph_def = meta.graph_def
    library = {f.signature.name: f for f in graph_def.library.function}
    by_name = {n.name: n for n in graph_def.node}

    def reached(names: Iterable[str]) -> Set[str]:
        out: Set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in library and name not in out:
                out.add(name)
                for n in library[name].node_def:
                    stack += [n.op] + list(attr_functions(n.attr))
                stack += list(attr_functions(library[name].attr))
        return out

    def called_by(nodes) -> List[str]:
        return [name for node in nodes for name in [node.op] + list(attr_functions(node.attr))]

    saver = _saver_nodes(meta)
    used = reached(list(meta.object_graph_def.concrete_functions) +
                   called_by(n for n in graph_def.node if n.name not in saver))
    return reached(called_by(by_name[n] for n in saver if n in by_name)) - used


__all__ = ["safe_ops", "unsafe_nodes", "check", "check_constants", "refusal", "saver_only_functions",
           "limit_import_constants", "without_saver"]
