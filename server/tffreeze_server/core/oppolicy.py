"""Which ops an uploaded graph may hold before TensorFlow sees it.

Importing a graph is not passive: TensorFlow's shape inference evaluates
constant subgraphs while nodes are added (``import_graph_def``, the C++ shape
refiner, grappler), so ``Fill(StringToNumber(ReadFile(path)))`` would read a
server file during an import. Every graph the server hands to TensorFlow is
therefore checked first against a positive list of op kinds that only compute
on tensors (``data/safe_ops.txt``). Ops this TensorFlow does not register are
left to the unknown-op check (they cannot be imported, let alone run).

The check covers everything TensorFlow could run, not only what a node calls:

* every function in the graph's library, called or not: grappler's
  implementation selector runs, in place of a called function, another one
  that declares the same ``api_implements`` and prefers the device, and no
  node names that one. Graphs cut from an upload keep only the functions
  something could reach (``keep_reachable_functions``: calls, any attribute
  naming a function, gradients, and every member of an ``api_implements`` /
  ``_implements`` family one of them belongs to), and all of those are checked;
* every name an attribute gives as a function (``f``, ``then_branch``,
  ``body``, lists of functions, functions given as attributes of those, at any
  depth): one that is no library function but an op is run as that op;
* a TF2 SavedModel's save/restore functions (``saved_model_split``): checked
  too, with only the saver's own ops allowed besides the list, and never shown
  to TensorFlow (the loader is given the SavedModel without them).

Besides, TensorFlow is never left to pick functions: every session and
function execution of an upload-derived graph runs with grappler's
implementation selector and function rewriter off (``lock_rewriters``,
``session_config``, ``lock_eager``, ``lock_call_configs``).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from typing import Dict, Iterable, List, Optional, Set, Tuple

from .errors import InvalidArgument
from .oproles import SAVED_MODEL_SAVER_OPS

# PrintV2 may print to the log; an output_stream naming a file would write one.
_PRINT_STREAMS = {"stderr", "stdout", "log(info)", "log(warning)", "log(error)"}
_SHOWN = 10
# Function attributes grappler groups functions by: one member of a family may be run in place of another.
FAMILY_ATTRS = ("api_implements", "_implements")
# What a TF2 SavedModel's save and restore functions do besides computing on tensors.
SAVER_OPS = SAVED_MODEL_SAVER_OPS  # (the op-role table's; kept under this name for callers)


@functools.lru_cache(maxsize=1)
def safe_ops() -> frozenset:
    path = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "safe_ops.txt")
    with open(path, encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip() and not line.startswith("#"))


def _registered(op: str) -> bool:
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op) is not None


def _op_problem(op: str, attr_map, allowed: frozenset = frozenset()) -> Optional[str]:
    """Why running ``op`` with these attributes is refused, or None."""
    if op not in safe_ops() and op not in allowed:
        return op if _registered(op) else None
    if op == "PrintV2" and "output_stream" in attr_map:
        stream = attr_map["output_stream"].s.decode("utf-8", "replace")
        if stream not in _PRINT_STREAMS:
            return "PrintV2 to %s" % stream[:60]
    return None


def _node_problem(node) -> Optional[str]:
    return _op_problem(node.op, node.attr)


def attr_references(attr_map) -> Tuple[List[Tuple[str, str, object]], List[str]]:
    """What an attribute map names: ([(attribute, function name, its attributes)], [strings]).

    Functions are every ``func`` value, every entry of a list of them, and the
    functions given as attributes of those (a function instantiated with another
    as an attribute), at any depth. Strings are every string and list-of-strings
    value (an attribute may name a function by its name)."""
    funcs: List[Tuple[str, str, object]] = []
    strings: List[str] = []
    stack = [("", attr_map)]
    while stack:
        path, amap = stack.pop()
        for key in sorted(amap):
            value = amap[key]
            where = path + key
            kind = value.WhichOneof("value")
            if kind == "func":
                funcs.append((where, value.func.name, value.func.attr))
                stack.append((where + ".", value.func.attr))
            elif kind == "list":
                for i, f in enumerate(value.list.func):
                    funcs.append(("%s[%d]" % (where, i), f.name, f.attr))
                    stack.append(("%s[%d]." % (where, i), f.attr))
                strings.extend(s.decode("utf-8", "replace") for s in value.list.s if len(s) <= 1024)
            elif kind == "s" and len(value.s) <= 1024:
                strings.append(value.s.decode("utf-8", "replace"))
    return funcs, strings


class Library:
    """A GraphDef's function library, read as data: functions by name, gradients,
    and the families grappler may swap functions within."""

    def __init__(self, graph_def):
        self.functions: Dict[str, object] = {f.signature.name: f for f in graph_def.library.function}
        self.gradients: Dict[str, str] = {g.function_name: g.gradient_func for g in graph_def.library.gradient}
        by_value: Dict[Tuple[str, bytes], Set[str]] = {}
        for name, func in self.functions.items():
            for key in FAMILY_ATTRS:
                if key in func.attr:
                    value = func.attr[key]
                    token = value.s if value.WhichOneof("value") == "s" else value.SerializeToString()
                    by_value.setdefault((key, token), set()).add(name)
        self.family: Dict[str, Set[str]] = {}
        for members in by_value.values():
            for name in members:
                self.family.setdefault(name, set()).update(members)

    def named_by(self, node) -> List[str]:
        """Library functions a node (or a FunctionDef's attributes) names: its op, any
        function-valued attribute, any string attribute equal to a function's name."""
        funcs, strings = attr_references(node.attr)
        names = [node.op] if hasattr(node, "op") else []
        names += [name for _, name, _ in funcs] + strings
        return [n for n in names if n in self.functions]

    def reach(self, names: Iterable[str]) -> Set[str]:
        """Every library function reachable from ``names``: what their bodies and attributes
        name, their gradients and every member of their families."""
        seen: Set[str] = set()
        stack = [n for n in names if n in self.functions]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            func = self.functions[name]
            nxt = self.named_by(func)
            for node in func.node_def:
                nxt += self.named_by(node)
            if name in self.gradients:
                nxt.append(self.gradients[name])
            nxt += sorted(self.family.get(name, ()))
            stack.extend(n for n in nxt if n in self.functions and n not in seen)
        return seen

    def reached_from_nodes(self, nodes) -> Set[str]:
        return self.reach([n for node in nodes for n in self.named_by(node)])


def _attr_problems(attr_map, where: str, library: Library, allowed: frozenset) -> List[Tuple[str, str]]:
    """A function-valued attribute naming no library function names an op, which
    TensorFlow then runs as a one-op function: that op is checked like a node's."""
    found = []
    for key, name, attrs in attr_references(attr_map)[0]:
        if name and name not in library.functions:
            problem = _op_problem(name, attrs, allowed)
            if problem:
                found.append(("%s (attribute %s)" % (where, key), problem))
    return found


def unsafe_nodes(graph_def, nodes: Optional[Iterable[str]] = None, functions: Optional[Iterable[str]] = None,
                 allowed: Iterable[str] = ()) -> List[Tuple[str, str]]:
    """(where, op) for everything outside the positive list (plus ``allowed``) that
    TensorFlow could run from this graph: the top-level nodes (only those named by
    ``nodes`` when given), and every function of the library, called or not (only
    those named by ``functions`` when given), each with the ops its attributes name.
    ``where`` is ``node``, ``function/node`` or either followed by the attribute."""
    allowed = frozenset(allowed)
    library = Library(graph_def)
    found: List[Tuple[str, str]] = []

    def visit(node, prefix: str) -> None:
        if node.op not in library.functions:
            problem = _op_problem(node.op, node.attr, allowed)
            if problem:
                found.append((prefix + node.name, problem))
        found.extend(_attr_problems(node.attr, prefix + node.name, library, allowed))

    wanted = None if nodes is None else set(nodes)
    for node in graph_def.node:
        if wanted is None or node.name in wanted:
            visit(node, "")
    names = sorted(library.functions) if functions is None else sorted(set(functions) & set(library.functions))
    for name in names:
        func = library.functions[name]
        found.extend(_attr_problems(func.attr, "function " + name, library, allowed))
        for node in func.node_def:
            visit(node, name + "/")
    for fname in names:
        grad = library.gradients.get(fname)
        if grad and grad not in library.functions:
            problem = _op_problem(grad, {}, allowed)
            if problem:
                found.append(("gradient of %s" % fname, problem))
    return found


def keep_reachable_functions(graph_def) -> int:
    """Drop, in place, the library functions nothing in the graph could reach (see
    ``Library.reach``: calls, attributes, gradients, api_implements families); what
    is left is what TensorFlow may run, and all of it is checked. Returns how many went."""
    library = Library(graph_def)
    keep = library.reached_from_nodes(graph_def.node)
    lib = graph_def.library
    gone = [i for i, f in enumerate(lib.function) if f.signature.name not in keep]
    for i in reversed(gone):
        del lib.function[i]
    for i in reversed([i for i, g in enumerate(lib.gradient) if g.function_name not in keep]):
        del lib.gradient[i]
    return len(gone)


def output_count(node) -> Optional[int]:
    """How many outputs a node has, from its OpDef and attributes (None: not known)."""
    from .graph import output_types

    types = output_types(node)
    return None if types is None else len(types)


def stand_in_unsafe(graph_def) -> None:
    """In place, for a graph only looked at (shapes inferred, nothing run): each unsafe
    top-level node becomes placeholder(s) of its output types, of unknown shape, so what
    lies below it can be imported without it. Unsafe ops inside functions are left (the
    check that follows refuses them)."""
    from tensorflow.core.framework import tensor_shape_pb2

    from .graph import nodes_by_name, output_types

    by_name = nodes_by_name(graph_def)
    unknown = tensor_shape_pb2.TensorShapeProto(unknown_rank=True)
    for where, _ in unsafe_nodes(graph_def, functions=()):
        node = by_name.get(where)
        types = output_types(node) if node is not None else None
        if not types:
            continue
        stand_ins = {}
        for i, dtype in enumerate(types):
            holder = node if i == 0 else graph_def.node.add(name="%s/tffreeze_stand_in_%d" % (node.name, i))
            stand_ins[i] = holder.name
            holder.ClearField("input")
            holder.op = "Placeholder"
            holder.attr.clear()
            holder.attr["dtype"].type = dtype
            holder.attr["shape"].shape.CopyFrom(unknown)
        for other in graph_def.node:
            for j, inp in enumerate(other.input):
                src, _, index = inp.partition(":")
                if src == node.name and index and int(index) in stand_ins and int(index) > 0:
                    other.input[j] = stand_ins[int(index)]


def cut_below(graph_def, found: List[Tuple[str, str]]) -> List[str]:
    """The tensors that, named as inputs, cut ``graph_def`` just below its unsafe top-level
    nodes (each becomes a placeholder): an unsafe node's only output when something safe
    reads it, else the safe single-output nodes that read it. Empty when an unsafe op is
    inside a function or no such cut exists."""
    from .graph import nodes_by_name

    by_name = nodes_by_name(graph_def)
    unsafe = {where for where, _ in found}
    if not unsafe <= set(by_name):
        return []  # inside a function, or named by an attribute: no cut of the graph removes it alone
    readers: Dict[str, List[object]] = {}
    for node in graph_def.node:
        if node.name in unsafe:
            continue
        for inp in node.input:
            if not inp.startswith("^") and inp.split(":")[0] in unsafe:
                readers.setdefault(inp.split(":")[0], []).append(node)
    cut: List[str] = []
    for name in (w for w, _ in found):
        users = readers.get(name, [])
        if not users:
            continue  # only unsafe nodes (or control edges) use it: cut below those
        if output_count(by_name[name]) == 1:
            tensors = [name + ":0"]
        elif all(output_count(u) == 1 for u in users):
            tensors = [u.name + ":0" for u in users]
        else:
            return []
        cut += [t for t in tensors if t not in cut]
    return cut


def refusal(found: List[Tuple[str, str]], what: str = "the graph", graph_def=None) -> InvalidArgument:
    """The UNSAFE_OP refusal; given the graph, it names the inputs that cut it below the
    unsafe nodes (``cut_below``), which a freeze with those inputs accepts."""
    ops = sorted({op for _, op in found})
    shown = ", ".join("%s (%s)" % (op, where) for where, op in found[:_SHOWN])
    more = " and %d more" % (len(found) - _SHOWN) if len(found) > _SHOWN else ""
    in_functions = any("/" in where or where.startswith(("function ", "gradient ")) for where, _ in found)
    if graph_def is not None:
        names = {n.name for n in graph_def.node}
        in_functions = any(where.split(" (attribute ")[0] not in names for where, _ in found)
    functions = (" Every function in the graph's library counts, whether or not a node calls it: TensorFlow may "
                 "run one in place of another that implements the same API." if in_functions else "")
    cut = cut_below(graph_def, found) if graph_def is not None else []
    if cut:
        advice = ("To freeze the model below them, name these tensors as inputs: %s. Each becomes a placeholder, "
                  "fed with what the refused op computed. " % ", ".join(cut[:_SHOWN]))
        tail = "If these nodes are not part of the model, choose outputs that do not need them."
    else:
        advice = ""
        tail = ("If these nodes are not part of the model, choose outputs that do not need them, or cut the graph "
                "below them with inputs.")
    metadata = {"ops": ",".join(o[:60] for o in ops[:20]), "nodes": ",".join(w[:100] for w, _ in found[:_SHOWN])}
    if cut:
        metadata["inputs"] = ",".join(cut[:_SHOWN])
    return InvalidArgument(
        "%s holds op(s) the server does not import or run: %s%s. %sOnly ops that compute on tensors are accepted "
        "(the list is data/safe_ops.txt in the server package); ops that read or write files, start processes, "
        "reach the network or other tasks are refused, because TensorFlow evaluates parts of a graph while "
        "importing it.%s %s" % (what, shown, more, advice, functions, tail),
        "ERROR_REASON_UNSAFE_OP", **metadata)


_constant_limit = [0]  # bytes; set once per task process (tasks.py), from ServerLimits


def limit_import_constants(limit: int) -> None:
    """The largest constant an imported graph may make TensorFlow build (0: no limit).
    Each task runs in a process of its own, so this is that task's setting."""
    _constant_limit[0] = int(limit)


def constant_limit() -> int:
    """This task's import-time constant limit in bytes (0: none)."""
    return _constant_limit[0]


def check(graph_def, what: str = "the graph") -> None:
    """Raise INVALID_ARGUMENT (ERROR_REASON_UNSAFE_OP) naming the unsafe nodes (top
    level and every library function), or RESOURCE_EXHAUSTED (ERROR_REASON_MEMORY_LIMIT)
    for a constant too large to build at import."""
    found = unsafe_nodes(graph_def)
    if found:
        raise refusal(found, what)
    check_constants(graph_def)


def check_constants(graph_def) -> None:
    """``bounds.check_import_constants`` with this task's limit."""
    from .bounds import check_import_constants

    check_import_constants(graph_def, _constant_limit[0])


# -- TF2 SavedModels: the saver's part ----------------------------------------------------
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


def saved_model_split(meta) -> Tuple[Set[str], Set[str]]:
    """(saver nodes, saver-only functions) of a TF2 SavedModel's MetaGraph: the top-level
    nodes of its saver_def's save/restore ops, and the functions only those reach. A
    function anything else names (the object graph's functions, other top-level nodes, a
    function no node calls, the api_implements family of any of them) is not the saver's."""
    library = Library(meta.graph_def)
    saver = _saver_nodes(meta)
    from_saver = library.reached_from_nodes(n for n in meta.graph_def.node if n.name in saver)
    roots = [n for n in meta.object_graph_def.concrete_functions if n in library.functions]
    roots += [f for f in library.functions if f not in from_saver]
    others = library.reach(roots) | library.reached_from_nodes(
        n for n in meta.graph_def.node if n.name not in saver)
    return saver, from_saver - others


def without_saver(meta, saver_nodes: Set[str], saver_functions: Set[str]):
    """A copy of the MetaGraph without the saver's nodes, functions and saver_def: what
    TensorFlow's TF2 loader is given (it restores variables with ops of its own)."""
    out = type(meta)()
    out.CopyFrom(meta)
    graph = out.graph_def
    for i in reversed([i for i, n in enumerate(graph.node) if n.name in saver_nodes]):
        del graph.node[i]
    for i in reversed([i for i, f in enumerate(graph.library.function) if f.signature.name in saver_functions]):
        del graph.library.function[i]
    for i in reversed([i for i, g in enumerate(graph.library.gradient)
                       if g.function_name in saver_functions or g.gradient_func in saver_functions]):
        del graph.library.gradient[i]
    out.ClearField("saver_def")
    return out


# -- grappler: no rewriter picks or makes functions ------------------------------------------
def lock_rewriters(rewrite_options) -> None:
    """Turn off, in a RewriterConfig, every grappler pass that can bring a function in:
    the implementation selector (it runs another function of the called one's
    api_implements family), the function optimizer, plugin and custom optimizers."""
    from tensorflow.core.protobuf import rewriter_config_pb2

    off = rewriter_config_pb2.RewriterConfig.OFF
    rewrite_options.implementation_selector = off
    rewrite_options.function_optimization = off
    rewrite_options.use_plugin_optimizers = off
    rewrite_options.auto_parallel.enable = False
    rewrite_options.scoped_allocator_optimization = off
    del rewrite_options.custom_optimizers[:]
    # a named list of optimizers replaces the defaults: nothing named there may be one of the above
    kept = [o for o in rewrite_options.optimizers if o not in ("function", "implementation_selector")]
    del rewrite_options.optimizers[:]
    rewrite_options.optimizers.extend(kept)


def session_config():
    """The ConfigProto for every Session that runs an upload-derived graph."""
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto()
    lock_rewriters(config.graph_options.rewrite_options)
    return config


_EAGER_OFF = {"implementation_selector": False, "function_optimization": False}


def lock_eager() -> None:
    """The same for functions TensorFlow runs eagerly in this process (a TF2 SavedModel's
    initializers, restore and signatures): every function call's config carries it."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options(_EAGER_OFF)


def _locked_bytes(data: bytes) -> bytes:
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto()
    try:
        config.ParseFromString(data)
    except DecodeError:
        config = config_pb2.ConfigProto()
    lock_rewriters(config.graph_options.rewrite_options)
    return config.SerializeToString(deterministic=True)


def _call_configs(graph_def):
    for node in itertools.chain(graph_def.node, (n for f in graph_def.library.function for n in f.node_def)):
        if "config_proto" in node.attr and node.attr["config_proto"].WhichOneof("value") == "s":
            yield node.attr["config_proto"]


def lock_call_configs(graph_def) -> int:
    """In place: the ``config_proto`` a (Stateful)PartitionedCall carries is the
    grappler config its function runs under, written by whoever built the graph; each
    gets the rewriters above turned off (its other settings kept). Returns how many."""
    count = 0
    for value in _call_configs(graph_def):
        value.s = _locked_bytes(value.s)
        count += 1
    return count


@contextlib.contextmanager
def locked_call_configs(graph_def):
    """``lock_call_configs`` for the time of the block, the graph's own values put back
    after (the graph is not copied: it may hold the weights)."""
    saved = [(value, value.s) for value in _call_configs(graph_def)]
    try:
        for value, data in saved:
            value.s = _locked_bytes(data)
        yield graph_def
    finally:
        for value, data in saved:
            value.s = data


__all__ = ["safe_ops", "unsafe_nodes", "check", "check_constants", "refusal", "cut_below", "output_count", "stand_in_unsafe", "keep_reachable_functions",
           "saved_model_split", "without_saver", "limit_import_constants", "constant_limit", "lock_rewriters", "session_config",
           "lock_eager", "lock_call_configs", "locked_call_configs", "attr_references", "Library", "SAVER_OPS", "FAMILY_ATTRS"]
