"""The verify option: run the original model (its graph with the checkpoint's values
assigned) and the frozen graph on the same generated inputs and report the
largest absolute difference per output. This executes the uploaded graph's
inference part; what reaches it passed the positive op list (``oppolicy``) when
it was resolved, and it runs in a worker, inside the sandbox when the server has
one (see ``sandbox``).
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from . import oppolicy


def generate_inputs(infos: List[dict], seed: int = 0) -> Dict[str, np.ndarray]:
    """Deterministic inputs respecting dtype and shape (unknown dims = 2, unknown rank = scalar)."""
    rng = np.random.RandomState(seed)
    out = {}
    for info in infos:
        shape = [2 if d < 0 else d for d in (info["shape"] or [])]
        dtype = np.dtype(info["dtype"]) if info["dtype"] != "string" else np.dtype(object)
        if dtype.kind == "f":
            value = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            value = np.zeros(shape, dtype)
        elif dtype.kind == "b":
            value = np.zeros(shape, bool)
        else:
            value = np.full(shape, b"", dtype=object)
        out[info["name"]] = value
    return out


def run_graph_def(graph_def, feeds: Dict[str, np.ndarray], fetches: List[str],
                  assign: Dict[str, Tuple[np.ndarray, int]] = None) -> List[np.ndarray]:
    """Import ``graph_def`` and run it; ``assign`` gives variable node -> value to set first.
    The session, and every function call in the graph, run with grappler's function
    rewriters off (``oppolicy.session_config``, ``oppolicy.locked_call_configs``): no
    function is run in place of the one a node names."""
    graph = tf.Graph()
    with graph.as_default(), oppolicy.locked_call_configs(graph_def):
        tf.graph_util.import_graph_def(graph_def, name="")
        init = []
        init_feeds = {}
        for name, (value, dtype_enum) in (assign or {}).items():
            holder = tf.compat.v1.placeholder(tf.dtypes.as_dtype(dtype_enum), value.shape)
            op = graph.get_operation_by_name(name)
            if op.type == "VarHandleOp":
                init.append(tf.raw_ops.AssignVariableOp(resource=op.outputs[0], value=holder))
            else:
                init.append(tf.compat.v1.assign(op.outputs[0], holder))
            init_feeds[holder] = value
    with tf.compat.v1.Session(graph=graph, config=oppolicy.session_config()) as sess:
        if init:
            sess.run(init, init_feeds)
        return sess.run(fetches, {graph.get_tensor_by_name(k): v for k, v in feeds.items()})


def max_abs_diffs(names: List[str], a: List[np.ndarray], b: List[np.ndarray]) -> List[dict]:
    out = []
    for name, x, y in zip(names, a, b):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            diff = float(np.max(np.abs(x.astype(np.float64) - y.astype(np.float64)))) if x.size else 0.0
        else:
            diff = 0.0 if np.array_equal(x, y) else float("inf")
        out.append({"name": name, "max_abs_diff": diff})
    return out
