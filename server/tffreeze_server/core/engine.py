"""The freeze engine's entry points: ``freeze`` and ``inspect`` over a working
directory that holds an upload. Plain dicts in and out, so that they cross
process boundaries; errors are ``core.errors`` exceptions.

For Saver checkpoints, graph files and TF1 SavedModels the uploaded graph is
never executed: the MetaGraphDef is parsed as protobuf, values come from
TensorFlow's checkpoint reader, and the graph is rewritten as data. TF2
SavedModels are loaded by TensorFlow (which runs their restore function; see
``saved_model``). ``--verify`` runs the original and frozen graphs on
generated inputs (see ``verify``). Everything runs in worker processes.
"""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import tensor_util

from . import convert, optimize as optimize_mod, saved_model, switches, target115, verify as verify_mod
from .errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from .graph import PLACEHOLDER_OPS, VARIABLE_OPS, node_of, nodes_by_name, split_tensor
from .resolve import resolve, user_collections
from .saver_map import variable_keys
from .sources import Source, open_source
from .values import EMA_SUFFIX, read_values

Progress = Callable[[str, str, float], None]
_DEFAULT_JSON_MAX = 16


def _noop(stage, message, fraction):
    pass


def _shape_json(shape: tf.TensorShape):
    if shape.rank is None:
        return None
    return [-1 if d is None else int(d) for d in shape.as_list()]


def _jsonable(array: np.ndarray):
    if array.dtype.kind in "SO":
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v),
                            otypes=[object])(array).tolist()
    return array.tolist()


def _dtype_name(dtype) -> str:
    dtype = tf.dtypes.as_dtype(dtype).base_dtype
    return "string" if dtype == tf.string else np.dtype(dtype.as_numpy_dtype).name


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


def _cut_inputs(graph_def, inputs: List[Tuple[str, str]], warnings: List[str]) -> None:
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
                                  "must be the only output of its op" % (tensor_name, index, len(tensor.op.outputs),
                                                                        node.op))
        convert.replace_with_placeholder(graph_def, node_name, tensor.dtype.as_datatype_enum, tensor.shape.as_proto())
        warnings.append("input %s is a %s, not a placeholder; the frozen graph is cut there and it becomes a "
                        "Placeholder" % (tensor_name, node.op))


def _check_ops(graph_def) -> None:
    bad_ops = convert.unknown_ops(graph_def)
    if bad_ops:
        raise FailedPrecondition(
            "the graph uses op(s) this server's TensorFlow %s does not know: %s. Freeze it on a server whose "
            "TensorFlow has these ops (or the custom-op library loaded)."
            % (tf.__version__, ", ".join(sorted({"%s (node %s)" % (op, n) for n, op in bad_ops})[:10])))


def _signature_name(meta, wanted: str) -> Optional[str]:
    if not meta.signature_def:
        if wanted:
            raise InvalidArgument("--signature %s: the graph has no signature defs" % wanted)
        return None
    if wanted:
        if wanted not in meta.signature_def:
            raise InvalidArgument("--signature %s is not in the graph; signatures: %s"
                                  % (wanted, ", ".join(sorted(meta.signature_def))))
        return wanted
    return "serving_default" if "serving_default" in meta.signature_def else sorted(meta.signature_def)[0]


def _reject_training(graph_def) -> None:
    convert.reject_forbidden(graph_def)
    bn = switches.training_batch_norms(graph_def)
    if bn:
        raise FailedPrecondition(
            "batch norm in training mode (batch statistics) is still needed by the outputs: %s. Bind the switch "
            "that selects it (e.g. --bind is_training=false), or choose other outputs." % ", ".join(bn[:10]))


def _prepare_saver_graph(src: Source, options: dict, warnings: List[str], progress: Progress):
    """The GraphDef with variables as constants, plus resolution and bookkeeping, for sources read as data."""
    meta = src.meta
    sig_name = _signature_name(meta, options.get("signature") or "")
    res = resolve(meta, list(options.get("outputs") or []), list(options.get("inputs") or []), sig_name)
    warnings += res.warnings
    graph_def = type(meta.graph_def)()
    graph_def.CopyFrom(meta.graph_def)
    if res.inputs:
        _cut_inputs(graph_def, res.inputs, warnings)
    order = {n.name: i for i, n in enumerate(graph_def.node)}
    output_nodes = sorted({node_of(t) for t, _ in res.outputs}, key=order.__getitem__)
    pruned = convert.prune(graph_def, output_nodes)
    original = type(pruned)()
    original.CopyFrom(pruned)  # for --verify: the model before binding and conversion
    explicit_inputs = {node_of(t) for t, r in (res.inputs or []) if r == "explicit --inputs"}
    binds = switches.parse_binds(list(options.get("bind") or []))
    for name in explicit_inputs:
        binds.setdefault(name, None)  # an explicit input is never bound by default
    bindings = switches.bind(pruned, binds)
    if bindings:
        switches.fold_conditionals(pruned)
        pruned = convert.prune(pruned, output_nodes)
    _check_ops(pruned)
    mapping = variable_keys(meta.graph_def)
    if src.reader is None and any(n.op in VARIABLE_OPS for n in pruned.node):
        raise FailedPrecondition("the outputs need variables but the upload has no checkpoint values "
                                 "(variables/variables.index)")
    values, ema_used, value_warnings = read_values(pruned, meta.graph_def, src.reader, mapping, options, progress)
    warnings += value_warnings
    convert.check_size(values, pruned, options.get("_size_limit") or convert.PROTOBUF_LIMIT)
    progress("converting", "turning %d variable(s) into constants" % len(values), 0.65)
    frozen = convert.tidy(convert.to_constants(pruned, values))
    verify_values = values if options.get("verify") else None
    return {
        "frozen": frozen, "res": res, "bindings": bindings, "ema_used": ema_used, "count": len(values),
        "signature": sig_name, "original": original, "verify_values": verify_values,
    }


def _inputs_of(frozen, res_inputs, order: Dict[str, int]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """Inputs of the frozen graph; placeholders in the order the original graph declared them."""
    warnings = []
    names = {node_of(t) for t, _ in (res_inputs or [])}
    holders = sorted(convert.placeholders(frozen), key=lambda n: (order.get(n.name, len(order)), n.name))
    if res_inputs is None:
        return [("%s:0" % n.name, "placeholder the outputs depend on") for n in holders], warnings
    present = {n.name for n in frozen.node}
    inputs = [(t, r) for t, r in res_inputs if node_of(t) in present]
    for t, _ in res_inputs:
        if node_of(t) not in present:
            warnings.append("input %s is not used by the outputs (or was bound); it is not in the frozen graph" % t)
    for n in holders:
        if n.name not in names:
            inputs.append(("%s:0" % n.name, "placeholder the outputs depend on"))
    return inputs, warnings


def freeze(workdir: str, options: dict, out_path: str, progress: Progress = _noop) -> dict:
    """Freeze the upload in ``workdir``; write the GraphDef to ``out_path``.

    ``options`` mirrors FreezeOptions (outputs, inputs, step, checkpoint_prefix,
    graph_path, signature, tags, bind, ema, var_map, include_variables,
    exclude_variables, optimize, verify) plus the server's
    ``_allow_unsafe_verify``. Returns the manifest as a dict."""
    progress("selecting_checkpoint", "looking at the upload", 0.05)
    src = open_source(workdir, options)
    warnings = list(src.warnings)
    progress("loading_graph", "reading the %s graph" % src.kind, 0.1)
    signature_aliases = None
    bindings: List[dict] = []
    ema_used: List[str] = []
    verify_plan = None
    if src.kind == "saved_model_v2":
        for flag in ("bind", "var_map", "include_variables", "exclude_variables", "ema", "outputs", "inputs",
                     "graph_path"):
            if options.get(flag):
                raise InvalidArgument("--%s does not apply to a TF2 SavedModel (its signature defines the graph)"
                                      % flag.replace("_", "-"))
        graph_def, sig_in, sig_out, sig_name = saved_model.freeze(src.export_dir, src.tags,
                                                                  options.get("signature") or "")
        frozen = convert.tidy(convert.prune(graph_def, sorted({node_of(t) for _, t in sig_out})))
        inputs = [(t, "signature_def %r input %r" % (sig_name, a)) for a, t in sig_in]
        outputs = [(t, "signature_def %r output %r" % (sig_name, a)) for a, t in sig_out]
        signature_aliases = (sig_name, sig_in, sig_out)
        variables_frozen = sum(1 for n in graph_def.node if n.op == "Const")
        if options.get("verify"):
            verify_plan = ("v2", src, sig_name, sig_in, sig_out)
    else:
        prep = _prepare_saver_graph(src, options, warnings, progress)
        frozen, res = prep["frozen"], prep["res"]
        bindings, ema_used, variables_frozen = prep["bindings"], prep["ema_used"], prep["count"]
        order = {n.name: i for i, n in enumerate(src.meta.graph_def.node)}
        inputs, input_warnings = _inputs_of(frozen, res.inputs, order)
        warnings += input_warnings
        outputs = res.outputs
        if prep["signature"]:
            sig = src.meta.signature_def[prep["signature"]]
            signature_aliases = (prep["signature"],
                                 [(a, sig.inputs[a].name) for a in sorted(sig.inputs)],
                                 [(a, sig.outputs[a].name) for a in sorted(sig.outputs)])
        if options.get("verify"):
            verify_plan = ("graph", prep["original"], prep["verify_values"], bindings)
    _reject_training(frozen)

    if options.get("optimize"):
        progress("optimizing", "inference optimisations", 0.75)
        frozen, done = optimize_mod.optimize(frozen, [node_of(t) for t, _ in inputs],
                                             [node_of(t) for t, _ in outputs])
        frozen = convert.tidy(frozen)
        warnings.append("--optimize: " + "; ".join(done))

    target = options.get("target") or ""
    if target:
        progress("targeting", "making the graph load in %s" % target, 0.8)
        warnings += ["--target %s: %s" % (target, n) for n in target115.convert(frozen, target)]

    progress("writing", "checking the frozen graph imports", 0.85)
    graph = tf.Graph()
    with graph.as_default():
        tf.graph_util.import_graph_def(convert.skeleton(frozen), name="")
    described_inputs = _describe(graph, frozen, inputs)
    described_outputs = _describe(graph, frozen, outputs)
    signature = _signature_map(graph, frozen, described_inputs + described_outputs, signature_aliases)

    verification = []
    if verify_plan is not None:
        progress("verifying", "running original and frozen graphs on generated inputs", 0.9)
        verification = _verify(verify_plan, frozen, described_inputs, described_outputs, options)

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
        "checkpoint": src.checkpoint,
        "warnings": warnings,
        "provenance": {"tensorflow_version": tf.__version__},
        "node_count": node_count,
        "variables_frozen": variables_frozen,
        "bindings": bindings,
        "signature": signature,
        "verification": verification,
        "source_kind": src.kind,
        "ema_variables": ema_used,
        "target": target,
    }


def _signature_map(graph, frozen, described: List[dict], aliases) -> Optional[dict]:
    """{"name", "inputs": {alias: tensor}, "outputs": {...}} for the tensors still in the frozen graph."""
    if not aliases:
        return None
    name, sig_in, sig_out = aliases
    present = {n.name for n in frozen.node}
    by_tensor = {d["name"]: d for d in described}

    def entry(t):
        t = t if ":" in t else t + ":0"
        if node_of(t) not in present:
            return None
        info = by_tensor.get(t) or _describe(graph, frozen, [(t, "")])[0]
        return {k: info[k] for k in ("name", "dtype", "shape")}

    def part(pairs):
        return {a: e for a, e in ((a, entry(t)) for a, t in pairs) if e is not None}

    return {"name": name, "inputs": part(sig_in), "outputs": part(sig_out)}


def _verify(plan, frozen, inputs: List[dict], outputs: List[dict], options: dict) -> List[dict]:
    try:
        return _run_verification(plan, frozen, inputs, outputs, options)
    except tf.errors.OpError as exc:
        raise FailedPrecondition("--verify could not run the graphs on generated inputs (%s); the frozen graph "
                                 "was not checked. Freeze without --verify, or check it on real inputs with "
                                 "`tffreeze run`." % (exc.message or "").strip().splitlines()[0]) from None


def _run_verification(plan, frozen, inputs: List[dict], outputs: List[dict], options: dict) -> List[dict]:
    allowed = bool(options.get("_allow_unsafe_verify"))
    feeds = verify_mod.generate_inputs(inputs)
    fetches = [o["name"] for o in outputs]
    verify_mod.refuse_unsafe(frozen, allowed)
    got = verify_mod.run_graph_def(frozen, feeds, fetches)
    if plan[0] == "v2":
        _, src, sig_name, sig_in, sig_out = plan
        loaded = tf.saved_model.load(src.export_dir, tags=src.tags or None)
        func = loaded.signatures[sig_name]
        by_tensor = {t: a for a, t in sig_in}
        result = func(**{by_tensor[k]: tf.constant(v) for k, v in feeds.items()})
        alias_of = {t: a for a, t in sig_out}
        want = [result[alias_of[name]].numpy() for name in fetches]
    else:
        _, original, values, bindings = plan
        verify_mod.refuse_unsafe(original, allowed)
        original_feeds = dict(feeds)
        for b in bindings:
            original_feeds[b["name"]] = np.asarray(b["value"])
        want = verify_mod.run_graph_def(original, original_feeds, fetches, assign=values)
    return verify_mod.max_abs_diffs(fetches, want, got)


def inspect(workdir: str, options: dict, progress: Progress = _noop) -> dict:
    """Describe the upload in ``workdir``: variables, candidate inputs and
    outputs (with reasons), signatures, collections, switches, EMA shadows."""
    progress("selecting_checkpoint", "looking at the upload", 0.1)
    try:
        src = open_source(workdir, options)
    except FailedPrecondition as exc:
        if "no meta graph" not in exc.message:
            raise
        return _inspect_variables_only(workdir, options, exc.message)
    warnings = list(src.warnings)
    reader = src.reader
    inputs: List[dict] = []
    outputs: List[dict] = []
    graph_of_key: Dict[str, str] = {}
    switch_infos: List[dict] = []
    ema: List[str] = []
    signatures: List[str] = []
    collections: List[str] = []
    if src.kind == "saved_model_v2":
        loaded = tf.saved_model.load(src.export_dir, tags=src.tags or None)
        signatures = sorted(loaded.signatures.keys())
        warnings.append("TF2 SavedModel: inputs and outputs come from the signature; variables are listed by "
                        "checkpoint key")
        reader = tf.train.load_checkpoint(os.path.join(src.export_dir, "variables", "variables"))
    else:
        meta = src.meta
        sig_name = _signature_name(meta, options.get("signature") or "")
        mapping = variable_keys(meta.graph_def)
        graph_of_key = {ref.key: var for var, ref in mapping.items()}
        res = resolve(meta, list(options.get("outputs") or []), list(options.get("inputs") or []), sig_name)
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
        for sw in switches.find_switches(pruned):
            switch_infos.append({"name": sw.name + ":0", "dtype": _dtype_name(sw.dtype),
                                 "inference_value": sw.inference_value})
        keys = set(reader.get_variable_to_dtype_map()) if reader is not None else set()
        for node in pruned.node:
            if node.op in VARIABLE_OPS:
                key = mapping[node.name].key if node.name in mapping else node.name
                if node.name + EMA_SUFFIX in keys or key + EMA_SUFFIX in keys:
                    ema.append(node.name)
        signatures = sorted(meta.signature_def)
        collections = user_collections(meta)
    variables = _variables(reader, graph_of_key)
    return {
        "checkpoint": src.checkpoint,
        "available_checkpoints": src.available,
        "variables": variables,
        "inputs": inputs,
        "outputs": outputs,
        "signatures": signatures,
        "collections": collections,
        "warnings": warnings,
        "provenance": {"tensorflow_version": tf.__version__},
        "switches": switch_infos,
        "ema_shadows": ema,
        "source_kind": src.kind,
    }


def _variables(reader, graph_of_key) -> List[dict]:
    if reader is None:
        return []
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    return [{"checkpoint_key": k, "dtype": _dtype_name(dtypes[k]), "shape": [int(d) for d in shapes[k]],
             "graph_variable": graph_of_key.get(k, "")} for k in sorted(dtypes)]


def _inspect_variables_only(workdir: str, options: dict, why: str) -> dict:
    from tffreeze import layout

    from .sources import files_in, open_reader

    files = files_in(workdir)
    sel = layout.select(files, None, options.get("step"), options.get("checkpoint_prefix") or None)
    reader = open_reader(workdir, sel.checkpoint.prefix)
    return {
        "checkpoint": {"prefix": sel.checkpoint.prefix, "step": sel.checkpoint.step, "meta_graph": ""},
        "available_checkpoints": sel.available, "variables": _variables(reader, {}), "inputs": [], "outputs": [],
        "signatures": [], "collections": [], "switches": [], "ema_shadows": [], "source_kind": "checkpoint only",
        "warnings": ["no graph in the upload: only the checkpoint's variables can be listed (%s)" % why],
        "provenance": {"tensorflow_version": tf.__version__},
    }


def _attr_dtype(node) -> str:
    for key in ("dtype", "T", "out_type", "DstT"):
        if key in node.attr and node.attr[key].type:
            return _dtype_name(node.attr[key].type)
    return ""


def _attr_shape(node):
    if "shape" in node.attr:
        return _shape_json(tf.TensorShape(node.attr["shape"].shape))
    if "_output_shapes" in node.attr and node.attr["_output_shapes"].list.shape:
        return _shape_json(tf.TensorShape(node.attr["_output_shapes"].list.shape[0]))
    return None


__all__ = ["freeze", "inspect"]
