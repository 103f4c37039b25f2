"""The freeze engine's entry points: ``freeze`` and ``inspect`` over a working
directory that holds an uploaded checkpoint. Plain dicts in and out, so that
they cross process boundaries; errors are ``core.errors`` exceptions.

The uploaded graph is never executed: the MetaGraphDef is parsed as protobuf,
values come from TensorFlow's checkpoint reader, and the graph is rewritten as
data. The only TensorFlow graph built is an import of the *frozen* result, to
check it loads and to read dtypes and shapes (importing runs nothing).
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.framework import errors as tf_errors
from tensorflow.python.framework import tensor_util

from tffreeze import layout

from . import convert
from .errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from .graph import PLACEHOLDER_OPS, node_of, nodes_by_name, split_tensor
from .resolve import resolve, user_collections
from .saver_map import KeyRef, variable_keys

Progress = Callable[[str, str, float], None]
_DEFAULT_JSON_MAX = 16


def _noop(stage, message, fraction):
    pass


def _files_in(workdir: str) -> List[str]:
    out = []
    for root, _, files in os.walk(workdir):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), workdir).replace(os.sep, "/"))
    return sorted(out)


def _select(workdir: str, options: dict) -> layout.Selection:
    files = _files_in(workdir)
    state_path = os.path.join(workdir, layout.STATE_FILE)
    state = None
    if os.path.isfile(state_path):
        with open(state_path, "r", encoding="utf-8", errors="replace") as fh:
            state = fh.read()
    try:
        return layout.select(files, state, options.get("step"), options.get("checkpoint_prefix") or None)
    except layout.SelectionError as exc:
        raise (NotFound if exc.code == "NOT_FOUND" else InvalidArgument)(str(exc)) from None


def _load_meta(workdir: str, sel: layout.Selection):
    if sel.checkpoint.meta is None:
        raise FailedPrecondition(
            "checkpoint %r has no meta graph (.meta file), so there is no graph to freeze. Upload the "
            "PREFIX.meta that tf.train.Saver writes (saver.save(..., write_meta_graph=True))."
            % sel.checkpoint.prefix)
    meta = meta_graph_pb2.MetaGraphDef()
    path = os.path.join(workdir, sel.checkpoint.meta)
    try:
        with open(path, "rb") as fh:
            meta.ParseFromString(fh.read())
    except DecodeError as exc:
        raise InvalidArgument("%s is not a MetaGraphDef (%s); upload the .meta file tf.train.Saver wrote"
                              % (sel.checkpoint.meta, exc)) from None
    if not meta.graph_def.node:
        raise InvalidArgument("%s holds an empty graph; upload the .meta file tf.train.Saver wrote"
                              % sel.checkpoint.meta)
    return meta


def _open_reader(workdir: str, sel: layout.Selection):
    prefix = os.path.join(workdir, sel.checkpoint.prefix)
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf_errors.OpError, ValueError) as exc:
        msg = getattr(exc, "message", None) or str(exc)
        raise InvalidArgument(
            "cannot read checkpoint %r: %s. The .index or data files are corrupt or truncated, or do not "
            "belong together; re-upload the files exactly as tf.train.Saver wrote them."
            % (sel.checkpoint.prefix, msg.strip().splitlines()[0] if msg.strip() else type(exc).__name__)) from None


def _step(sel: layout.Selection, reader) -> Optional[int]:
    if sel.checkpoint.step is not None:
        return sel.checkpoint.step
    if reader.has_tensor("global_step"):
        try:
            return int(reader.get_tensor("global_step"))
        except (TypeError, ValueError):
            return None
    return None


def _slice(array: np.ndarray, spec: str) -> np.ndarray:
    """Apply a checkpoint slice spec 'd0 d1 s0,l0:s1,l1' ('-' means whole dim)."""
    if not spec:
        return array
    parts = spec.split(" ")
    index = []
    for dim in parts[-1].split(":"):
        if dim == "-":
            index.append(slice(None))
        else:
            start, length = (int(v) for v in dim.split(","))
            index.append(slice(start, start + length))
    return array[tuple(index)]


def _read_values(graph_def, reader, mapping: Dict[str, KeyRef], progress: Progress) -> Tuple[Dict, List[str]]:
    dtypes = reader.get_variable_to_dtype_map()
    values = {}
    missing = []
    variables = convert.variables_in(graph_def)
    for i, node in enumerate(variables):
        ref = mapping.get(node.name) or KeyRef(node.name)
        if ref.key not in dtypes:
            missing.append("%s (checkpoint key %r)" % (node.name, ref.key))
            continue
        try:
            array = _slice(np.asarray(reader.get_tensor(ref.key)), ref.slice_spec)
        except (tf_errors.OpError, IndexError, ValueError) as exc:
            detail = (getattr(exc, "message", None) or str(exc)).strip()
            raise InvalidArgument(
                "cannot read variable %s (checkpoint key %r): %s. The data shard is truncated or corrupt; "
                "re-upload the .data-* files exactly as tf.train.Saver wrote them."
                % (node.name, ref.key, detail.splitlines()[0] if detail else type(exc).__name__)) from None
        want = tf.dtypes.as_dtype(node.attr["dtype"].type)
        if want.base_dtype != dtypes[ref.key].base_dtype:
            raise InvalidArgument("variable %s is %s in the graph but %s in the checkpoint (key %r)"
                                  % (node.name, want.name, dtypes[ref.key].name, ref.key))
        shape = tf.TensorShape(node.attr["shape"].shape) if "shape" in node.attr else tf.TensorShape(None)
        if not shape.is_compatible_with(array.shape):
            raise InvalidArgument("variable %s has shape %s in the graph but %s in the checkpoint (key %r)"
                                  % (node.name, shape, list(array.shape), ref.key))
        values[node.name] = (array, want.base_dtype.as_datatype_enum)
        progress("reading_variables", "read %s" % ref.key, 0.3 + 0.3 * (i + 1) / max(1, len(variables)))
    if missing:
        keys = sorted(dtypes)
        raise FailedPrecondition(
            "the outputs need %d variable(s) the checkpoint has no value for: %s. Checkpoint keys: %s%s. "
            "Choose other outputs, or upload the checkpoint this graph was trained with."
            % (len(missing), ", ".join(missing[:10]), ", ".join(keys[:20]), " ..." if len(keys) > 20 else ""))
    return values, mapping


def _shape_json(shape: tf.TensorShape):
    if shape.rank is None:
        return None
    return [-1 if d is None else int(d) for d in shape.as_list()]


def _describe(graph: tf.Graph, graph_def, named: List[Tuple[str, str]]) -> List[dict]:
    by_name = nodes_by_name(graph_def)
    out = []
    for tensor_name, reason in named:
        t = graph.get_tensor_by_name(tensor_name)
        info = {"name": tensor_name, "dtype": _dtype_name(t.dtype), "shape": _shape_json(t.shape),
                "reason": reason}
        node = by_name.get(node_of(tensor_name))
        if node is not None and node.op == "PlaceholderWithDefault":
            info["has_default"] = True
            src = by_name.get(node_of(node.input[0]))
            if src is not None and src.op == "Const":
                default = tensor_util.MakeNdarray(src.attr["value"].tensor)
                if default.size <= _DEFAULT_JSON_MAX:
                    info["default"] = _jsonable(default)
        out.append(info)
    return out


def _jsonable(array: np.ndarray):
    if array.dtype.kind in "SO":
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v),
                            otypes=[object])(array).tolist()
    return array.tolist()


def _dtype_name(dtype) -> str:
    dtype = tf.dtypes.as_dtype(dtype).base_dtype
    return "string" if dtype == tf.string else np.dtype(dtype.as_numpy_dtype).name


def _cut_inputs(graph_def, inputs: List[Tuple[str, str]], warnings: List[str]):
    """Explicit inputs that are not placeholders become placeholders (the graph is cut there)."""
    by_name = nodes_by_name(graph_def)
    probe = None
    for tensor_name, _ in inputs:
        node_name, index = split_tensor(tensor_name)
        node = by_name.get(node_name)
        if node is None or node.op in PLACEHOLDER_OPS:
            continue
        if probe is None:
            probe = tf.Graph()
            with probe.as_default():
                tf.graph_util.import_graph_def(graph_def, name="")
        tensor = probe.get_tensor_by_name(tensor_name)
        if index != 0 or len(tensor.op.outputs) != 1:
            raise InvalidArgument("input %r is output %d of a %d-output op %s; an input that is not a placeholder "
                                  "must be the only output of its op" % (tensor_name, index, len(tensor.op.outputs), node.op))
        convert.replace_with_placeholder(graph_def, node_name, tensor.dtype.as_datatype_enum, tensor.shape.as_proto())
        warnings.append("input %s is a %s, not a placeholder; the frozen graph is cut there and it becomes a "
                        "Placeholder" % (tensor_name, node.op))


def freeze(workdir: str, options: dict, out_path: str, progress: Progress = _noop) -> dict:
    """Freeze the checkpoint in ``workdir``; write the GraphDef to ``out_path``.

    options: outputs, inputs (lists of names), step (int|None), checkpoint_prefix.
    Returns the manifest as a dict (graph sha256/size, inputs, outputs,
    checkpoint, warnings, provenance, counts)."""
    progress("selecting_checkpoint", "looking for checkpoints", 0.05)
    sel = _select(workdir, options)
    warnings = list(sel.warnings)
    progress("loading_graph", "parsing %s" % sel.checkpoint.meta, 0.1)
    meta = _load_meta(workdir, sel)
    reader = _open_reader(workdir, sel)
    progress("resolving", "resolving inputs and outputs", 0.2)
    res = resolve(meta, list(options.get("outputs") or []), list(options.get("inputs") or []))
    warnings += res.warnings

    graph_def = meta.graph_def
    output_nodes = sorted({node_of(t) for t, _ in res.outputs}, key=[n.name for n in graph_def.node].index)
    if res.inputs:
        work = type(graph_def)()
        work.CopyFrom(graph_def)
        _cut_inputs(work, res.inputs, warnings)
        graph_def = work
    pruned = convert.prune(graph_def, output_nodes)
    bad_ops = convert.unknown_ops(pruned)
    if bad_ops:
        raise FailedPrecondition(
            "the graph uses op(s) this server's TensorFlow %s does not know: %s. Freeze it on a server whose "
            "TensorFlow has these ops (or the custom-op library loaded)."
            % (tf.__version__, ", ".join(sorted({"%s (node %s)" % (op, n) for n, op in bad_ops})[:10])))

    mapping = variable_keys(meta.graph_def)
    values, _ = _read_values(pruned, reader, mapping, progress)
    convert.check_size(values, pruned, options.get("_size_limit") or convert.PROTOBUF_LIMIT)
    progress("converting", "turning %d variable(s) into constants" % len(values), 0.65)
    frozen = convert.tidy(convert.to_constants(pruned, values))
    convert.reject_forbidden(frozen)

    input_names = {node_of(t) for t, _ in (res.inputs or [])}
    if res.inputs is None:
        inputs = [("%s:0" % n.name, "placeholder the outputs depend on") for n in convert.placeholders(frozen)]
    else:
        present = {n.name for n in frozen.node}
        inputs = [(t, r) for t, r in res.inputs if node_of(t) in present]
        for t, _ in res.inputs:
            if node_of(t) not in present:
                warnings.append("input %s is not used by the outputs; it is not in the frozen graph" % t)
        for n in convert.placeholders(frozen):
            if n.name not in input_names:
                inputs.append(("%s:0" % n.name, "placeholder the outputs depend on"))

    variables_frozen = len(values)
    del values  # the constants now hold the only copy of the weights
    progress("writing", "checking the frozen graph imports", 0.85)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(convert.skeleton(frozen), name="")
    described_inputs = _describe(graph, frozen, inputs)
    described_outputs = _describe(graph, frozen, res.outputs)
    node_count = len(frozen.node)
    data = frozen.SerializeToString(deterministic=True)
    del frozen
    if len(data) > convert.PROTOBUF_LIMIT:
        raise ResourceExhausted("the frozen graph is %d bytes, over protobuf's 2 GB limit" % len(data))
    tmp = out_path + ".part"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, out_path)

    return {
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "inputs": described_inputs,
        "outputs": described_outputs,
        "checkpoint": {"prefix": sel.checkpoint.prefix, "step": _step(sel, reader), "meta_graph": sel.checkpoint.meta},
        "warnings": warnings,
        "provenance": {"tensorflow_version": tf.__version__},
        "node_count": node_count,
        "variables_frozen": variables_frozen,
    }


def inspect(workdir: str, options: dict, progress: Progress = _noop) -> dict:
    """Describe the checkpoint in ``workdir``: variables, candidate inputs and
    outputs (with reasons), signatures and collections."""
    progress("selecting_checkpoint", "looking for checkpoints", 0.1)
    sel = _select(workdir, options)
    warnings = list(sel.warnings)
    reader = _open_reader(workdir, sel)
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    meta = None
    graph_of_key: Dict[str, str] = {}
    inputs: List[dict] = []
    outputs: List[dict] = []
    if sel.checkpoint.meta is None:
        warnings.append("no meta graph in the upload: only the checkpoint's variables can be listed")
    else:
        meta = _load_meta(workdir, sel)
        mapping = variable_keys(meta.graph_def)
        graph_of_key = {ref.key: var for var, ref in mapping.items()}
        res = resolve(meta, list(options.get("outputs") or []), list(options.get("inputs") or []))
        warnings += res.warnings
        pruned = convert.prune(meta.graph_def, [node_of(t) for t, _ in res.outputs])
        ins = res.inputs if res.inputs is not None else [
            ("%s:0" % n.name, "placeholder the outputs depend on") for n in convert.placeholders(pruned)]
        by_name = nodes_by_name(meta.graph_def)
        for named, out in ((ins, inputs), (res.outputs, outputs)):
            for tensor_name, reason in named:
                node = by_name[node_of(tensor_name)]
                out.append({"name": tensor_name, "reason": reason, "op": node.op,
                            "dtype": _attr_dtype(node), "shape": _attr_shape(node)})
    variables = [{"checkpoint_key": k, "dtype": _dtype_name(dtypes[k]), "shape": [int(d) for d in shapes[k]],
                  "graph_variable": graph_of_key.get(k, "")} for k in sorted(dtypes)]
    return {
        "checkpoint": {"prefix": sel.checkpoint.prefix, "step": _step(sel, reader),
                       "meta_graph": sel.checkpoint.meta or ""},
        "available_checkpoints": sel.available,
        "variables": variables,
        "inputs": inputs,
        "outputs": outputs,
        "signatures": sorted(meta.signature_def) if meta is not None else [],
        "collections": user_collections(meta) if meta is not None else [],
        "warnings": warnings,
        "provenance": {"tensorflow_version": tf.__version__},
    }


def _attr_dtype(node) -> str:
    for key in ("dtype", "T", "out_type", "DstT"):
        if key in node.attr and node.attr[key].type:
            return _dtype_name(node.attr[key].type)
    return ""


def _attr_shape(node):
    for key in ("shape",):
        if key in node.attr:
            return _shape_json(tf.TensorShape(node.attr[key].shape))
    if "_output_shapes" in node.attr and node.attr["_output_shapes"].list.shape:
        return _shape_json(tf.TensorShape(node.attr["_output_shapes"].list.shape[0]))
    return None


__all__ = ["freeze", "inspect"]
