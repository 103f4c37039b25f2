"""Limits checked before work, so a small upload cannot make a worker parse,
allocate or walk without bound: graph file bytes (before parsing), node count
and function nesting (after parsing, before anything walks the graph), and the
tensor sizes a checkpoint index declares (against the data actually uploaded,
before any value is read). The values are ``ServerLimits`` fields, set by
``tffreeze serve`` flags."""

from __future__ import annotations

import glob
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from .constvalues import Evaluator, range_size
from .errors import InvalidArgument, ResourceExhausted
from .graph import functions_called


def check_file(path: str, label: str, limit: int) -> None:
    size = os.path.getsize(path)
    if size > limit:
        raise ResourceExhausted(
            "%s is %d bytes, over this server's graph file limit of %d bytes (tffreeze serve "
            "--max-graph-file-bytes)" % (label[:200], size, limit), "ERROR_REASON_GRAPH_TOO_LARGE",
            path=label[:200], limit=str(limit))


def check_graph(graph_def, max_nodes: int, max_depth: int) -> None:
    """Node count (graph plus every library function) and how deeply functions
    call functions; a function that calls itself (directly or not) is refused."""
    library = {f.signature.name: f for f in graph_def.library.function}
    count = len(graph_def.node) + sum(len(f.node_def) for f in library.values())
    if count > max_nodes:
        raise ResourceExhausted(
            "the graph has %d nodes (functions included), over this server's limit of %d (tffreeze serve "
            "--max-graph-nodes)" % (count, max_nodes), "ERROR_REASON_GRAPH_TOO_LARGE", nodes=str(count),
            limit=str(max_nodes))
    calls: Dict[str, List[str]] = {name: [c for n in f.node_def for c in functions_called(n, library)]
                                   for name, f in library.items()}
    depth: Dict[str, int] = {}
    for root in sorted(library):
        if root in depth:
            continue
        # iterative post-order walk; "on path" marks detect recursion
        stack = [(root, 0)]
        on_path = set()
        while stack:
            name, i = stack.pop()
            on_path.add(name)
            children = calls[name]
            while i < len(children) and children[i] in depth:
                i += 1
            if i < len(children):
                if children[i] in on_path:
                    raise InvalidArgument("function %s calls itself (directly or through others); TensorFlow "
                                          "cannot run recursive functions" % children[i][:200],
                                          "ERROR_REASON_GRAPH_INVALID", function=children[i][:200])
                stack.append((name, i + 1))
                stack.append((children[i], 0))
                continue
            depth[name] = 1 + max((depth[c] for c in children), default=0)
            on_path.discard(name)
            if depth[name] > max_depth:
                raise ResourceExhausted(
                    "functions are nested %d deep from %s, over this server's limit of %d (tffreeze serve "
                    "--max-function-depth)" % (depth[name], name[:200], max_depth),
                    "ERROR_REASON_GRAPH_TOO_LARGE", function=name[:200], limit=str(max_depth))


def check_checkpoint(reader, prefix_path: str, prefix_label: str) -> None:
    """Every tensor the index declares must fit in the data files uploaded with it
    (at least its element count times the element size; a string at least one byte
    per element): a small forged index cannot make the reader allocate more than
    the upload holds."""
    data = sum(os.path.getsize(p) for p in glob.glob(glob.escape(prefix_path) + ".data-*"))
    shapes = reader.get_variable_to_shape_map()
    dtypes = reader.get_variable_to_dtype_map()
    for key in sorted(shapes):
        elements = int(np.prod([max(0, int(d)) for d in shapes[key]], dtype=object))
        dtype = dtypes[key]
        try:
            item = np.dtype(dtype.as_numpy_dtype).itemsize if dtype.name != "string" else 1
        except TypeError:
            item = 1
        need = elements * max(1, item)
        if need > data:
            raise InvalidArgument(
                "checkpoint %r is inconsistent: its index declares %s as %s %s (at least %d bytes) but the "
                "data files hold %d bytes in all (truncated, or not the data written with this index). Re-upload "
                "the .index and .data-* files exactly as TensorFlow wrote them." % (prefix_label[:200], key[:200], dtype.name, list(shapes[key])[:8], need, data),
                "ERROR_REASON_CHECKPOINT_CORRUPT", prefix=prefix_label[:200], key=key[:200])




# -- constants TensorFlow would build while importing a graph ----------------------
# Importing a graph evaluates constant subgraphs (the shape refiner asks for the value
# of a Fill's dims, a Reshape's shape, ...; grappler folds constants). An op whose
# output size is set by another tensor's *value* can then allocate far more than the
# upload holds: Fill(dims=[100000, 100000]) reduced to a scalar that sizes another
# Fill. These ops are bounded before anything is imported.

# op -> index of the input whose value is the output's shape (or a factor of its size)
_SHAPE_VALUE_INPUT = {
    "Fill": 0, "BroadcastTo": 1, "Empty": 0, "ScatterNd": 2, "SparseToDense": 1, "TensorListReserve": 1,
    "RandomUniform": 0, "RandomUniformInt": 0, "RandomStandardNormal": 0, "TruncatedNormal": 0,
    "StatelessRandomUniform": 0, "StatelessRandomNormal": 0, "StatelessTruncatedNormal": 0,
    "StatelessRandomUniformV2": 0, "StatelessRandomNormalV2": 0, "StatelessTruncatedNormalV2": 0,
    "StatelessRandomUniformInt": 0, "StatelessRandomUniformIntV2": 0, "Tile": 1, "OneHot": 1,
    "UnsortedSegmentSum": 2, "UnsortedSegmentMax": 2, "UnsortedSegmentMin": 2, "UnsortedSegmentProd": 2,
    "Range": -1, "ResizeBilinear": 1, "ResizeNearestNeighbor": 1, "ResizeBicubic": 1, "ResizeArea": 1,
    "MatrixDiagV2": 2, "MatrixDiagV3": 2, "Bincount": 1,
}
_SMALL = 4096  # shapes and counts are small: values at least this large are computed for a bound
_EVALUATED = 1 << 22  # elements the constant values computed for one graph's bounds may hold in all


class _Constants:
    """Static facts about one list of nodes (a graph or a function body): which nodes
    depend on constants only, and the values of small integer tensors built from them."""

    def __init__(self, nodes, max_elements: int = _SMALL):
        self.nodes = {n.name: n for n in nodes}
        self._const_only: Dict[str, bool] = {}
        self.evaluator = Evaluator(self.nodes.values(), max_elements, max_elements)

    @staticmethod
    def _inputs(node) -> List[str]:
        return [i.split(":")[0] for i in node.input if not i.startswith("^")]

    def const_only(self, name: str) -> bool:
        """The node's value is computable from Const nodes alone (TensorFlow may evaluate it at import)."""
        if name in self._const_only:
            return self._const_only[name]
        stack, order = [name], []
        while stack:  # iterative: graphs can be deep
            n = stack.pop()
            if n in self._const_only or n in order:
                continue
            order.append(n)
            node = self.nodes.get(n)
            if node is not None:
                stack += [i for i in self._inputs(node) if i not in self._const_only]
        for n in reversed(order):
            node = self.nodes.get(n)
            if node is None:
                self._const_only[n] = False  # a function argument, or missing
            elif node.op == "PlaceholderWithDefault":
                self._const_only[n] = False  # fed or not, a feed: TensorFlow never folds it while importing
            elif node.op == "Const":
                self._const_only[n] = True
            else:
                inputs = self._inputs(node)
                self._const_only[n] = bool(inputs) and not _stateful(node.op) and all(
                    self._const_only.get(i, False) for i in inputs)
        return self._const_only[name]

    def value(self, name: str) -> Optional[np.ndarray]:
        """The node's exact value, computed from Consts (``constvalues``), or None."""
        return self.evaluator.value(name)

    def elements(self, name: str) -> Optional[int]:
        """Elements of a Const's output (its declared shape), else None."""
        node = self.nodes.get(name)
        if node is None or node.op != "Const":
            return None
        dims = [max(0, int(d.size)) for d in node.attr["value"].tensor.tensor_shape.dim]
        return int(np.prod(dims, dtype=object)) if dims else 1


def _stateful(op: str) -> bool:
    try:
        from tensorflow.python.framework import op_def_registry
    except ImportError:  # pragma: no cover - the engine always has TensorFlow
        return False
    op_def = op_def_registry.get(op)
    return op_def is None or op_def.is_stateful


def _tensor(name: str) -> str:
    return name if ":" in name else name + ":0"


def _bound(c: _Constants, node) -> Tuple[Optional[int], Optional[str]]:
    """(an upper bound on the node's output elements or None, the tensor that sets its size)."""
    inputs = c._inputs(node)
    tensors = [_tensor(i) for i in node.input if not i.startswith("^")]  # (node:1 is not node:0)
    if node.op == "Range" and len(inputs) >= 3:
        values = [c.value(t) for t in tensors[:3]]
        missing = [t for t, v in zip(tensors[:3], values) if v is None or v.size != 1]
        if missing:  # one fed or read from a variable: sized when it runs, never at import
            return None, next((t for t in missing if not c.const_only(t.split(":")[0])), missing[0])
        # (a Range TensorFlow refuses, delta 0 or of the wrong sign, builds nothing)
        return range_size(*(v.reshape(-1)[0] for v in values)) or 0, None
    index = _SHAPE_VALUE_INPUT[node.op]
    if index >= len(inputs):
        return 0, None
    v = c.value(tensors[index])
    if v is None:
        return None, tensors[index]
    try:
        count = int(np.prod([max(0, int(x)) for x in v.reshape(-1)], dtype=object)) if v.size else 1
    except (ValueError, OverflowError, TypeError):  # not a size (NaN, a string): TensorFlow refuses it
        return 0, None
    if node.op in ("Tile", "OneHot", "UnsortedSegmentSum", "UnsortedSegmentMax", "UnsortedSegmentMin",
                   "UnsortedSegmentProd"):
        other = c.elements(inputs[0])
        if other is None and c.const_only(inputs[0]):
            known = c.value(tensors[0])
            other = None if known is None else known.size
        if other is None:
            return (None, tensors[0]) if c.const_only(inputs[0]) else (count, None)
        count *= max(1, other)
    return count, None


def check_import_constants(graph_def, limit: int) -> None:
    """Refuse (RESOURCE_EXHAUSTED, ERROR_REASON_MEMORY_LIMIT) a graph or function holding
    an op that TensorFlow could evaluate from constants while importing it and whose
    output would be over ``limit`` bytes (at 8 bytes per element), or whose size comes
    from constants the server cannot bound; nothing is imported or allocated first."""
    if not limit:
        return
    bodies = [("", graph_def.node)] + [(f.signature.name + "/", f.node_def) for f in graph_def.library.function]
    for prefix, nodes in bodies:
        c = None
        for node in nodes:
            if node.op not in _SHAPE_VALUE_INPUT:
                continue
            c = c or _Constants(nodes, max(_SMALL, min(limit // 8, _EVALUATED)))
            count, unknown = _bound(c, node)
            if count is None:
                if not c.const_only(unknown.split(":")[0]):
                    continue  # its size depends on a feed or a variable: known only when it runs
                feed = ("name %s as an input (it becomes a placeholder)" % unknown[:200] if not prefix else
                        "feed it to the function")  # (a function's body cannot be cut by inputs)
                raise ResourceExhausted(
                    "%s (%s) gets its size from constants (%s) that TensorFlow would evaluate while importing the "
                    "graph, and the server cannot bound them; it refuses such graphs before importing them. "
                    "Write the size as a constant, or feed it: %s." % ((prefix + node.name)[:200], node.op,
                                                                       unknown[:200], feed),
                    "ERROR_REASON_MEMORY_LIMIT", node=(prefix + node.name)[:200], limit=str(limit),
                    **({"inputs": unknown[:200]} if not prefix else {}))
            if count * 8 > limit:
                raise ResourceExhausted(
                    "%s (%s) would build %d elements (about %d MiB) from constants, over the %d MiB a task may "
                    "build while the graph is imported (a quarter of tffreeze serve --task-memory-bytes); it was "
                    "refused before anything was allocated" % ((prefix + node.name)[:200], node.op, count,
                                                               (count * 8) >> 20, limit >> 20),
                    "ERROR_REASON_MEMORY_LIMIT", node=(prefix + node.name)[:200], limit=str(limit))


__all__ = ["check_file", "check_graph", "check_checkpoint", "check_import_constants"]
