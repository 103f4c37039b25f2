"""The verify option: run the original model (its graph with the checkpoint's values
assigned) and the frozen graph on the same generated inputs and report the
largest absolute difference per output. This executes the uploaded graph's
inference part; what reaches it passed the positive op list (``oppolicy``) when
it was resolved, and it runs in a worker, inside the sandbox when the server has
one (see ``sandbox``).

The frozen graph must give the checkpoint's numbers in the runtime that will run it, not
only on paper: grappler rewrites a graph of constants differently from one of variables
(oneDNN's remapper fuses a layer norm it can now see whole, with its own epsilon). Each
output's largest difference is held to ``tolerance`` (--optimize's: 1e-4 absolute + 1e-4
x the output's largest magnitude); beyond it ``runtime_check`` looks for the grappler
pass that causes it by turning the passes off one at a time, and returns the session
setting that keeps the checkpoint's numbers (the manifest's session_config, which every
tffreeze runner applies), or refuses the freeze when none does.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from . import oppolicy
from .errors import FailedPrecondition

ATOL, RTOL = 1e-4, 1e-4  # --optimize's tolerance: |frozen - original| <= ATOL + RTOL * max |original|

# Grappler passes on in TensorFlow's default session that may change a graph's arithmetic,
# tried off one at a time (the function rewriters are off in every session here anyway).
GRAPPLER_PASSES = ("remapping", "arithmetic_optimization", "constant_folding", "layout_optimizer",
                   "dependency_optimization", "loop_optimization", "shape_optimization", "memory_optimization",
                   "common_subgraph_elimination", "debug_stripper", "pin_to_host_optimization")
ALL_PASSES = "all"  # the setting that turns the graph optimizer off as a whole (disable_meta_optimizer)


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
                  assign: Dict[str, Tuple[np.ndarray, int]] = None, setting=None) -> List[np.ndarray]:
    """Import ``graph_def`` and run it; ``assign`` gives variable node -> value to set first.
    The session, and every function call in the graph, run with grappler's function
    rewriters off (``oppolicy.session_config``, ``oppolicy.locked_call_configs``): no
    function is run in place of the one a node names. ``setting``: a ConfigProto merged
    into the session's config first (``session_setting``)."""
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
    config = oppolicy.session_config()
    if setting is not None:
        config.MergeFrom(setting)
        oppolicy.lock_rewriters(config.graph_options.rewrite_options)
    with tf.compat.v1.Session(graph=graph, config=config) as sess:
        if init:
            sess.run(init, init_feeds)
        return sess.run(fetches, {graph.get_tensor_by_name(k): v for k, v in feeds.items()})


def max_abs_diffs(names: List[str], a: List[np.ndarray], b: List[np.ndarray]) -> List[dict]:
    """Per output: the largest |a - b| (NaN where both are NaN counts as equal, NaN against a
    number as infinitely far) and the tolerance ``a`` (the original's values) allows."""
    out = []
    for name, x, y in zip(names, a, b):
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            if x.shape != y.shape:
                diff = float("inf")
            elif x.size:
                x64, y64 = x.astype(np.float64).reshape(-1), y.astype(np.float64).reshape(-1)
                with np.errstate(invalid="ignore"):
                    d = np.abs(x64 - y64)
                d[(x64 == y64) | (np.isnan(x64) & np.isnan(y64))] = 0.0
                d[np.isnan(d)] = np.inf
                diff = float(np.max(d))
            else:
                diff = 0.0
        else:
            diff = 0.0 if np.array_equal(x, y) else float("inf")
        out.append({"name": name, "max_abs_diff": diff, "tolerance": tolerance(x)})
    return out


def tolerance(original) -> float:
    """ATOL + RTOL x the output's largest finite magnitude (--optimize's tolerance, scaled)."""
    x = np.asarray(original)
    if x.dtype.kind not in "fiub" or not x.size:
        return ATOL
    finite = np.abs(x.astype(np.float64))
    finite = finite[np.isfinite(finite)]
    return ATOL + RTOL * (float(finite.max()) if finite.size else 0.0)


def session_setting(passes_off: List[str]):
    """The ConfigProto a runner creates its session with to turn ``passes_off`` off
    (``ALL_PASSES``: the graph optimizer as a whole)."""
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2

    config = config_pb2.ConfigProto()
    rw = config.graph_options.rewrite_options
    if ALL_PASSES in passes_off:
        rw.disable_meta_optimizer = True
    for name in passes_off:
        if name != ALL_PASSES:
            setattr(rw, name, rewriter_config_pb2.RewriterConfig.OFF)
    return config


def onednn() -> bool:
    """Whether this TensorFlow runs with oneDNN's optimizations (its remapper fusions among them)."""
    import os

    try:
        from tensorflow.python.util import _pywrap_util_port
        built = _pywrap_util_port.IsMklEnabled()
    except (ImportError, AttributeError):
        return False
    return bool(built) and os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1").lower() not in ("0", "false")


def _beyond(checks: List[dict]) -> List[dict]:
    return [c for c in checks if not c["max_abs_diff"] <= c["tolerance"]]


def _worst(checks: List[dict]) -> float:
    """The largest difference as a multiple of its tolerance."""
    return max([c["max_abs_diff"] / c["tolerance"] for c in checks] or [0.0])


def _say(c: dict) -> str:
    return "output %s differs from the checkpoint's by %.3g (tolerance %.3g)" % (c["name"], c["max_abs_diff"],
                                                                               c["tolerance"])


class RuntimeCheck:
    """What ``runtime_check`` found: ``checks`` (per output: name, max_abs_diff, tolerance,
    default_session_max_abs_diff when a setting is needed), ``passes_off`` and ``setting``
    (the ConfigProto, or None when the default session reproduces the checkpoint),
    ``measured`` (pass -> the first output beyond its tolerance: its difference with that
    pass off; the optimizer off under ``ALL_PASSES``) and ``notes``."""

    def __init__(self, checks, passes_off=(), setting=None, measured=None, notes=()):
        self.checks, self.passes_off, self.setting = checks, list(passes_off), setting
        self.measured, self.notes = dict(measured or {}), list(notes)


def runtime_check(names: List[str], want: List[np.ndarray], got: List[np.ndarray],
                  run: Callable[[Optional[object]], List[np.ndarray]]) -> RuntimeCheck:
    """Hold ``got`` (the frozen graph in TensorFlow's default session) to ``want`` (the
    checkpoint's numbers). Beyond the tolerance, ``run(setting)`` re-runs the frozen graph
    with grappler off, then with each pass of ``GRAPPLER_PASSES`` off, to find the cause;
    the setting that keeps every output within its tolerance is returned (one pass off, the
    passes that helped off together, or the optimizer off), else FAILED_PRECONDITION
    (ERROR_REASON_VERIFY_MISMATCH) names the output, the difference and the tolerance."""
    checks = max_abs_diffs(names, want, got)
    beyond = _beyond(checks)
    if not beyond:
        return RuntimeCheck(checks)
    version = tf.__version__
    first = beyond[0]
    without = max_abs_diffs(names, want, run(session_setting([ALL_PASSES])))
    if _beyond(without):
        c = _beyond(without)[0]
        raise FailedPrecondition(
            "verify: the frozen graph does not reproduce the checkpoint: %s in TensorFlow %s's default session, "
            "and by %.3g with its graph optimizer (grappler) off, so no session setting corrects it. The frozen "
            "graph computes something else than the checkpoint's graph; report it with the upload, or name other "
            "outputs" % (_say(first), version, c["max_abs_diff"]),
            "ERROR_REASON_VERIFY_MISMATCH", output=first["name"], max_abs_diff="%.6g" % first["max_abs_diff"],
            tolerance="%.6g" % first["tolerance"], cause="graph")
    measured, fixing = {}, []  # pass -> the first output's difference with it off
    ratio = {}
    for name in GRAPPLER_PASSES:
        off = max_abs_diffs(names, want, run(session_setting([name])))
        measured[name] = next(c["max_abs_diff"] for c in off if c["name"] == first["name"])
        ratio[name] = _worst(off)
        if not _beyond(off):
            fixing.append((ratio[name], name, off))
    base = _worst(checks)
    if fixing:
        _, chosen, final = min(fixing, key=lambda f: (f[0], GRAPPLER_PASSES.index(f[1])))
        passes = [chosen]
        cause = "grappler's %s pass" % chosen
    else:
        helped = [p for p in GRAPPLER_PASSES if ratio[p] < base]
        final = max_abs_diffs(names, want, run(session_setting(helped))) if helped else None
        if final is not None and not _beyond(final):
            passes = helped
            cause = "grappler's %s passes together" % ", ".join(helped)
        else:
            passes, final = [ALL_PASSES], without
            cause = "grappler's passes together (no one of them alone)"
    measured[ALL_PASSES] = next(c["max_abs_diff"] for c in without if c["name"] == first["name"])
    default = {c["name"]: c["max_abs_diff"] for c in checks}
    for c in final:
        c["default_session_max_abs_diff"] = default[c["name"]]
    helped = [p for p in GRAPPLER_PASSES if ratio[p] < base]
    shown = ", ".join("%s %.3g" % (p, measured[p]) for p in helped)
    if passes == [ALL_PASSES]:
        why = "no single pass brings it back (%s), grappler as a whole off does (%.3g)" % (
            shown or "each off in turn leaves it", measured[ALL_PASSES])
    else:
        why = "with grappler's passes off one at a time, %s brings it back (%s), so %s causes it" % (
            " and ".join(helped) or "none alone", shown or "-", cause)
    notes = ["verify: in TensorFlow %s's default session%s, %s; %s. The manifest's session_config turns %s off; "
             "tffreeze run, tffreeze-cs run and tffreeze-cpp run apply it (--manifest), and with it every output is "
             "within its tolerance (%s: %.3g)"
             % (version, " (oneDNN on)" if onednn() else "", _say(first), why,
                "the graph optimizer" if passes == [ALL_PASSES] else " and ".join(passes),
                first["name"], next(c["max_abs_diff"] for c in final if c["name"] == first["name"]))]
    return RuntimeCheck(final, passes, session_setting(passes), measured, notes)
