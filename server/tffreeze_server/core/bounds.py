"""Limits checked before work, so a small upload cannot make a worker parse,
allocate or walk without bound: graph file bytes (before parsing), node count
and function nesting (after parsing, before anything walks the graph), and the
tensor sizes a checkpoint index declares (against the data actually uploaded,
before any value is read). The values are ``ServerLimits`` fields, set by
``tffreeze serve`` flags."""

from __future__ import annotations

import glob
import os
from typing import Dict, List

import numpy as np

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


__all__ = ["check_file", "check_graph", "check_checkpoint"]
