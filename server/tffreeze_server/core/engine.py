"""The freeze engine: a loader per source kind (``loaders``), then one pipeline.

``freeze(workdir, spec, out_path)`` and ``inspect(workdir, spec)`` take a
validated ``FreezeSpec`` and return the contract's own messages
(``FreezeResult``, ``InspectResponse``); errors are ``core.errors`` exceptions
with reasons. Both share the same steps:

  load -> pick signature -> resolve names -> cut inputs -> prune -> bind
  switches, fold conditionals -> check ops -> read values -> constants ->
  refuse training ops -> optimize -> target -> check import, describe ->
  verify -> write

For Saver checkpoints, graph files and TF1 SavedModels the uploaded graph is
never executed: the MetaGraphDef is parsed as protobuf, values come from
TensorFlow's checkpoint reader, and the graph is rewritten as data. TF2
SavedModels are loaded by TensorFlow (see ``loaders``). The verify option runs
the original and frozen graphs on generated inputs (see ``verify``).
Everything here runs in worker processes.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import os
import sys
import traceback
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.framework import graph_pb2, types_pb2
from tensorflow.python.framework import tensor_util

from tffreeze_api import tf_errors
from tffreeze_api.fileio import write_all
from tffreeze_api.v1 import freeze_pb2

from . import convert as convert_mod, oppolicy, optimize as optimize_mod, rewrite, splice, switches, tables, tensorflowsharp, verify as verify_mod
from .errors import FailedPrecondition, FreezeError, InvalidArgument, NotFound, ResourceExhausted, without_paths
from .oproles import ITERATOR_GET_NEXT_OPS, PLACEHOLDER_OPS, VARIABLE_OPS
from .graph import (fixed_output_count, output_types, node_of, nodes_by_name, output_dtype_enum, output_shape_proto,
                    split_tensor)
from .loaders import Loaded, load, load_checked_saved_model, open_reader, pick_signature
from .resolve import EXPLICIT_INPUT, Resolution, candidate_records, explain, resolve, structure_of, user_collections
from .saver_map import variable_keys
from .spec import FreezeSpec, format_enum, target_enum
from . import randomness, stages
from .values import averages_in_keys, computed_from, holds_averages, read_values
from .words import article, tidy

Progress = Callable[[int, str, float], None]  # (Stage, message, fraction)
_DEFAULT_MAX = 16


def _noop(stage, message, fraction):
    pass


# -- describing tensors ------------------------------------------------------------
def dtype_name(dtype) -> str:
    """numpy's spelling ("float32", "string"); TensorFlow's for types numpy has no name for
    ("variant", "resource", "qint8")."""
    dtype = tf.dtypes.as_dtype(dtype).base_dtype
    if dtype == tf.string:
        return "string"
    try:
        name = np.dtype(dtype.as_numpy_dtype).name
    except (KeyError, TypeError):
        return dtype.name
    return dtype.name if name.startswith("void") else name


def _set_shape(msg, shape: tf.TensorShape) -> None:
    """A ListValue shape (-1 for unknown dims); left unset for an unknown rank."""
    if shape.rank is None:
        msg.ClearField("shape")
        return
    msg.shape.SetInParent()
    del msg.shape.values[:]
    for d in shape.as_list():
        msg.shape.values.add().number_value = -1 if d is None else int(d)


def _jsonable(array: np.ndarray):
    if array.dtype.kind in "SO":
        return np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v),
                            otypes=[object])(array).tolist()
    return array.tolist()


def _describe(graph: tf.Graph, graph_def, named: List[Tuple[str, str]]) -> List[freeze_pb2.TensorInfo]:
    by_name = nodes_by_name(graph_def)
    out = []
    for tensor_name, reason in named:
        t = graph.get_tensor_by_name(tensor_name)
        info = freeze_pb2.TensorInfo(name=tensor_name, dtype=dtype_name(t.dtype), reason=tidy(reason))
        _set_shape(info, t.shape)
        _default_of(info, by_name.get(node_of(tensor_name)), by_name)
        out.append(info)
    return out


def _default_of(info, node, by_name) -> None:
    """A placeholder_with_default's default (the value a run that does not feed it uses)."""
    if node is not None and node.op == "PlaceholderWithDefault":
        info.has_default = True
        src = by_name.get(node_of(node.input[0]))
        if src is not None and src.op == "Const":
            default = tensor_util.MakeNdarray(src.attr["value"].tensor)
            if default.size <= _DEFAULT_MAX:
                _to_value(info.default, _jsonable(default))


def _to_value(msg, value) -> None:
    """Fill a google.protobuf.Value from a JSON-like Python value."""
    json_format.ParseDict(value, msg)


# -- pipeline steps ------------------------------------------------------------------
def _cut_iterator(graph_def, node_name: str, warnings: List[str]) -> Dict[str, str]:
    """tf.data's IteratorGetNext becomes one placeholder per output (``rewrite.cut_iterator``);
    nothing above it (iterator, datasets) is checked, imported or kept."""
    renames = rewrite.cut_iterator(graph_def, node_name)
    made = sorted(set(renames.values()))
    warnings.append("data enters the model through %s (tf.data); it became placeholder(s) %s of the dtypes and "
                    "shapes the iterator declares: feed them instead of the dataset"
                    % (node_name, ", ".join(made[:10])))
    return renames


def _iterator_words(node_name: str, made: List[str], wrapped: List[Tuple[str, str]]) -> str:
    """The warning for an IteratorGetNext cut into placeholders: only those the outputs need
    (labels the iterator also gave are pruned), and the inputs whose default the dataset gave
    (``x = placeholder_with_default(features)``), which became plain placeholders to feed."""
    if not made and wrapped:
        return ("data enters the model through %s (tf.data) as the default of %s; the frozen graph has no "
                "dataset, so feed %s (%s now, with no default)" % (
                    node_name, ", ".join(t for t, _ in wrapped), ", ".join(t for t, _ in wrapped),
                    "a placeholder" if len(wrapped) == 1 else "placeholders"))
    return ("data enters the model through %s (tf.data); it became placeholder(s) %s of the dtypes and shapes "
            "the iterator declares: feed %s instead of the dataset"
            % (node_name, ", ".join(made[:10]) or "none the outputs need",
               ", ".join(t for t, _ in wrapped) + " (the input%s whose default the dataset gave)" % (
                   "s" if len(wrapped) > 1 else "") if wrapped else "them"))


def _cut_inputs(graph_def, inputs: List[Tuple[str, str]], warnings: List[str]) -> Dict[str, str]:
    """Explicit inputs that are not placeholders become placeholders (the graph is cut there).
    The cut tensor's dtype and shape come from the NodeDef when it records them; else
    only the nodes computing it are imported, after the op check. An IteratorGetNext is
    cut without looking above it. Returns renamed inputs {old tensor: new tensor}."""
    by_name = nodes_by_name(graph_def)
    probe = None
    renames: Dict[str, str] = {}
    for tensor_name, _ in inputs:
        node_name, index = split_tensor(tensor_name)
        node = by_name.get(node_name)
        if node is not None and node.op in ITERATOR_GET_NEXT_OPS:
            renames.update(_cut_iterator(graph_def, node_name, []))  # (worded once the graph is pruned: _resolve)
            by_name = nodes_by_name(graph_def)
            continue
        if node is None or node.op in PLACEHOLDER_OPS:
            continue
        types = output_types(node)  # (an op with a list of outputs, such as PyFunc, too)
        n_outputs = fixed_output_count(node) if types is None else len(types)
        dtype = output_dtype_enum(node, index) or (types[index] if types and index < len(types) else 0)
        shape = output_shape_proto(node, index)
        if n_outputs is None or not dtype or shape is None:
            if probe is None:
                above = rewrite.prune(graph_def, [node_of(t) for t, _ in inputs if node_of(t) in by_name])
                oppolicy.keep_reachable_functions(above)
                oppolicy.stand_in_unsafe(above)  # an input at or below an unsafe op cuts there: never imported
                oppolicy.check(above, "the part of the graph above the inputs")
                probe = tf.Graph()
                with probe.as_default():
                    tf.graph_util.import_graph_def(above, name="")
            tensor = probe.get_tensor_by_name(tensor_name)
            n_outputs, dtype, shape = len(tensor.op.outputs), tensor.dtype.as_datatype_enum, tensor.shape.as_proto()
        if index != 0 or n_outputs != 1:
            raise InvalidArgument("input %r is output %d of a %d-output op %s; an input that is not a placeholder "
                                  "must be the only output of its op" % (tensor_name, index, n_outputs, node.op),
                                  "ERROR_REASON_INVALID_NAME", field="options.inputs", name=tensor_name)
        op = node.op  # before the node is replaced (it then is the Placeholder)
        rewrite.replace_with_placeholder(graph_def, node_name, dtype, shape)
        warnings.append("input %s is %s, not a placeholder; the frozen graph is cut there and it becomes a "
                        "Placeholder" % (tensor_name, article(op)))
    return renames


def _check_ops(graph_def) -> None:
    bad_ops = rewrite.unknown_ops(graph_def)
    if bad_ops:
        ops = sorted({op for _, op in bad_ops})
        raise FailedPrecondition(
            "the graph uses op(s) this server's TensorFlow %s does not know: %s. Freeze it on a server whose "
            "TensorFlow has these ops (or the custom-op library loaded)."
            % (tf.__version__, ", ".join(sorted({"%s (node %s)" % (op, n) for n, op in bad_ops})[:10])),
            "ERROR_REASON_UNKNOWN_OP", ops=",".join(ops[:20]))


def _clearing_binds(graph_def) -> List[str]:
    """For each unbound bool switch, the binding that leaves the frozen graph with no training op
    (``is_eval=true`` for a switch that means evaluation), found by trying both values; when
    neither alone does, ``NAME=false`` as the usual inference value."""
    read = {node_of(i) for m in graph_def.node for i in m.input}  # (once: the graph may hold 50k nodes)
    outputs = [n.name for n in graph_def.node if n.name not in read]
    found = []
    for sw in switches.find_switches(graph_def):
        if sw.dtype != tf.bool.as_datatype_enum or sw.inference_value is not None:
            continue
        clears = []
        for value in (False, True):
            trial = type(graph_def)()
            trial.CopyFrom(graph_def)
            switches.bind(trial, {sw.name: value})
            switches.fold_conditionals(trial)
            trial = rewrite.prune(trial, [o for o in outputs if o != sw.name])
            called = switches.called_functions(trial)
            kept = [f for f in trial.library.function if f.signature.name in called]
            del trial.library.function[:]
            trial.library.function.extend(kept)
            if not rewrite.forbidden_nodes(trial):
                clears.append(value)
        found.append("%s=%s" % (sw.name, "true" if clears == [True] else "false"))
    return found


def _reject_training(graph_def, named: bool = False, warnings: Optional[List[str]] = None) -> None:
    """Refuse training ops the outputs still need, and batch norms in training mode unless the
    outputs were named: then the batch statistics are what was asked for (TensorFlow's own
    freeze_graph freezes them too; some models, pix2pix's generator, run that way on purpose)
    and it is a warning."""
    if rewrite.forbidden_nodes(graph_def):
        rewrite.reject_forbidden(graph_def, _clearing_binds(graph_def))
    bn = switches.training_batch_norms(graph_def)
    if bn and named and warnings is not None:
        warnings.append("batch norm in training mode (batch statistics, not the moving averages) is in the frozen "
                        "graph, as the outputs named need it: %s. If that is not meant, bind the switch that "
                        "selects it or save the graph built with is_training=False" % ", ".join(bn[:10]))
        return
    if bn:
        names = [s.name for s in switches.find_switches(graph_def)]
        hint = ("Either bind the switch that selects it (options.bind %s), or choose other outputs."
                % ", ".join("%s=false" % n for n in names[:3]) if names else
                "The graph was built with training-mode batch norm fixed (e.g. is_training=True as a python "
                "bool): rebuild the model with is_training=False and save its graph with this checkpoint, "
                "or choose other outputs. A model that runs on batch statistics by design (as a pix2pix "
                "generator does) is frozen as it is when its outputs are named (options.outputs).")
        raise FailedPrecondition(
            "batch norm in training mode (batch statistics) is still needed by the outputs: %s. %s"
            % (", ".join(bn[:10]), hint), "ERROR_REASON_TRAINING_OP_NEEDED", nodes=",".join(bn[:20]))


def _inputs_of(frozen, res_inputs, order: Dict[str, int]) -> Tuple[List[Tuple[str, str]], List[str]]:
    """Inputs of the frozen graph; placeholders in the order the original graph declared them."""
    warnings = []
    names = {node_of(t) for t, _ in (res_inputs or [])}
    holders = sorted(rewrite.placeholders(frozen), key=lambda n: (order.get(n.name, len(order)), n.name))
    if res_inputs is None:
        return [("%s:0" % n.name, "placeholder the outputs depend on") for n in holders], warnings
    present = {n.name for n in frozen.node}
    fed = {n.name for n in holders}
    inputs = [(t, r) for t, r in res_inputs if node_of(t) in fed]
    for t, _ in res_inputs:
        if node_of(t) not in present:
            warnings.append("input %s is not used by the outputs (or was bound); it is not in the frozen graph" % t)
        elif node_of(t) not in fed:  # (a switch a signature or collection lists, bound: a constant now)
            warnings.append("input %s was bound to a value: it is a constant of the frozen graph, not an input" % t)
    for n in holders:
        if n.name not in names:
            inputs.append(("%s:0" % n.name, "placeholder the outputs depend on"))
    return inputs, warnings


@contextlib.contextmanager
def naming_outputs(outputs: List[Tuple[str, str]], signatures: Optional[List[str]] = None):
    """A failure after resolution says which outputs were chosen and why (the fix is often other outputs).

    Not on a failure that blames another option the user gave (``--bind``, ``--input-shape``,
    ``--include-variables``...): its fix is that option, and a list of outputs beside it misleads.
    ``signatures``: the outputs are a signature's and only another signature chooses others (a TF2
    SavedModel): metadata chosen_with names that option and signatures lists the other ones."""
    try:
        yield
    except FreezeError as exc:
        field = exc.metadata.get("field", "")
        blames_other_option = field.startswith("options.") and field not in ("options.outputs", "options.inputs")
        if "outputs" not in exc.metadata and not blames_other_option:
            shown = ", ".join("%s (%s)" % o for o in outputs[:10]) + (" ..." if len(outputs) > 10 else "")
            exc.message = "%s [outputs: %s]" % (exc.message, shown)
            exc.args = (exc.message,)
            exc.metadata["outputs"] = ",".join(t for t, _ in outputs[:50])
            if signatures is not None:
                exc.metadata["chosen_with"] = "options.signature"
                exc.metadata["signatures"] = ",".join(signatures)
        raise


@dataclass
class Resolved:
    """A loaded upload with its signature and names resolved, pruned to the outputs."""

    loaded: Loaded
    signature: Optional[str]
    res: Resolution
    pruned: object  # GraphDef: what the outputs need, before binding and conversion
    warnings: List[str] = field(default_factory=list)


def _resolve(loaded: Loaded, spec: FreezeSpec, warnings: List[str], refuse_ambiguous: bool = True,
             refuse_unsafe: bool = True) -> Resolved:
    """Steps shared by freeze and inspect: signature, names, cut inputs, prune, check
    the ops that are left against the positive list (``oppolicy``)."""
    meta = loaded.meta
    where = "SavedModel" if loaded.export_dir else "graph"
    sig_name = pick_signature(list(meta.signature_def), spec.signature, where)
    res = resolve(meta, list(spec.outputs), list(spec.inputs), sig_name, refuse_ambiguous)
    warnings += res.warnings
    graph_def = type(meta.graph_def)()
    graph_def.CopyFrom(meta.graph_def)
    renames: Dict[str, str] = {}
    meta_ops = {n.name: n.op for n in meta.graph_def.node}
    if res.inputs:
        renames = _cut_inputs(graph_def, res.inputs, warnings)
        res.inputs = [(renames.get(t, t), r) for t, r in res.inputs]
    order = {n.name: i for i, n in enumerate(graph_def.node)}
    output_nodes = sorted({node_of(t) for t, _ in res.outputs}, key=order.__getitem__)
    pruned = rewrite.prune(graph_def, output_nodes)
    if res.inputs and renames:
        kept = {n.name for n in pruned.node}
        for it in sorted({node_of(old) for old in renames if meta_ops.get(node_of(old)) in ITERATOR_GET_NEXT_OPS}):
            warnings.append(_iterator_words(it, sorted({new for old, new in renames.items()
                                                        if node_of(old) == it and node_of(new) in kept}), []))
    if any(n.op in ("Assign", "AssignVariableOp") for n in pruned.node):
        carried = rewrite.drop_carried_state(graph_def, {n.name for n in pruned.node})
        if carried:
            pruned = rewrite.prune(graph_def, output_nodes)
            kept = {n.name for n in pruned.node}
            gone = [a for a in carried if a not in kept]
            if gone:
                warnings.append("the outputs were ordered after %s, which set%s a variable to a value computed from "
                                "its own (state carried from run to run, as power iteration's vector in spectral "
                                "normalisation); the frozen graph computes them from the checkpoint's value without "
                                "it, as the first run after restoring does" % (
                                    ", ".join(gone[:5]) + (" and %d more" % (len(gone) - 5) if len(gone) > 5 else ""),
                                    "s" if len(gone) == 1 else ""))
    feeding = [n.name for n in pruned.node if n.op in ITERATOR_GET_NEXT_OPS]
    if feeding:  # data enters through tf.data: cut there, automatically
        for name in feeding:
            renames = _cut_iterator(graph_def, name, [])
            made = {v: k for k, v in renames.items()}
            order.update({node_of(v): order.get(name, len(order)) for v in made})
            # An input whose default the dataset gave (x = placeholder_with_default(features)) has
            # no default left without the dataset: it becomes a plain placeholder, to be fed.
            wrapped = []
            for node in graph_def.node:
                if node.op == "PlaceholderWithDefault" and node.input and node_of(node.input[0]) in {
                        node_of(v) for v in made} and node.name in {n.name for n in pruned.node}:
                    shape = type(node.attr["shape"].shape)()
                    shape.CopyFrom(node.attr["shape"].shape)
                    wrapped.append((node.name + ":0", node.input[0]))
                    rewrite.replace_with_placeholder(graph_def, node.name, node.attr["dtype"].type, shape)
            pruned = rewrite.prune(graph_def, output_nodes)
            kept = {n.name for n in pruned.node}
            warnings.append(_iterator_words(name, [v for v in sorted(made) if node_of(v) in kept], wrapped))
            found_inputs = [(v, "tf.data input: output %s of %s" % (made[v].rsplit(":", 1)[1], name))
                            for v in sorted(made) if node_of(v) in kept]
            res.inputs = (res.inputs or []) + [i for i in found_inputs if i[0] not in {t for t, _ in res.inputs or []}]
    # the library keeps what the outputs could run (api_implements families too), and all of it is checked
    oppolicy.keep_reachable_functions(pruned)
    found = oppolicy.unsafe_nodes(pruned)
    if found and refuse_unsafe:
        raise oppolicy.refusal(found, "the part of the graph the outputs need", pruned)
    if not found:  # (unsafe nodes are never imported: inspect only warns about them)
        oppolicy.check_constants(pruned)
    if found:
        warnings.append("freezing these outputs would be refused: they need op(s) the server does not import or "
                        "run: %s" % ", ".join("%s (%s)" % (op, where) for where, op in found[:10]))
    return Resolved(loaded, sig_name, res, pruned, warnings)


def _bind(r: Resolved, spec: FreezeSpec, result: freeze_pb2.FreezeResult):
    """Bind switches (training switches by default, the bind option) and fold what they drive."""
    graph_def = r.pruned
    if r.loaded.kind == freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2:
        return graph_def, []
    binds = dict(spec.bind)
    present = {n.name for n in graph_def.node}
    for t, reason in (r.res.inputs or []):
        if reason == EXPLICIT_INPUT and node_of(t) in present:  # (one the outputs do not read: a warning later)
            binds.setdefault(node_of(t), None)  # an explicit input is never bound by default
    inference = {sw.name: sw.inference_value for sw in switches.find_switches(graph_def)}
    graph_def = type(graph_def)()
    graph_def.CopyFrom(r.pruned)
    bindings = switches.bind(graph_def, binds, switches.batch_norm_defaults(r.pruned, binds))
    for name, value in spec.bind.items():  # a training switch bound to another value than inference's
        if value is not None and inference.get(name) is not None and value != inference[name]:
            result.warnings.append("options.bind %s=%s: its inference value is %s; the frozen graph computes what the "
                                   "model does in training (dropout, batch statistics) wherever the switch decides"
                                   % (name, json.dumps(value), json.dumps(inference[name])))
    for b in bindings:
        msg = result.bindings.add(name=b["name"], reason=b["reason"])
        _to_value(msg.value, b["value"])
    # (a cond whose predicate is a constant already, tf.cond(tf.constant(False), ...) in a graph built for
    # one mode, folds as a bound one does)
    if switches.fold_conditionals(graph_def) or bindings:
        present = {n.name for n in graph_def.node}
        gone = [t for t, _ in r.res.outputs if node_of(t) not in present]
        if gone:
            raise FailedPrecondition(
                "output(s) %s belong to the branch of a cond that binding %s removes (the switch decides it is "
                "never taken). Name outputs after the cond, or leave the switch unbound (bind %s to keep it an "
                "input)." % (", ".join(gone[:5]), ", ".join(b["name"] for b in bindings[:3]),
                             bindings[0]["name"].split(":")[0]),
                "ERROR_REASON_NAME_NOT_IN_GRAPH", field="options.outputs", name=gone[0])
        order = {n.name: i for i, n in enumerate(r.pruned.node)}
        graph_def = rewrite.prune(graph_def, sorted({node_of(t) for t, _ in r.res.outputs}, key=order.__getitem__))
    return graph_def, bindings


class _StageTracker:
    """Remembers the stage a task reached, so an unexpected failure can name it."""

    def __init__(self, progress: Progress):
        self.progress, self.stage = progress, freeze_pb2.STAGE_LOADING_GRAPH

    def __call__(self, stage, message, fraction):
        self.stage = stages.contract(stage)  # (a stage of the pool's own, such as a TF2 load, as clients see it)
        self.progress(stage, message, fraction)


def _stage_words(stage) -> str:
    return freeze_pb2.Stage.Name(stage)[len("STAGE_"):].lower().replace("_", " ")


def _guarded(task):
    """Run an engine task over an upload: any failure that is not already an engine
    error becomes FAILED_PRECONDITION naming the step (never INTERNAL for an upload);
    the traceback goes to the worker's log. A full disk or exhausted memory is
    RESOURCE_EXHAUSTED; no message carries a server path."""
    @functools.wraps(task)
    def run(workdir, spec, *args, progress: Progress = _noop, **kwargs):
        tracker = _StageTracker(progress)
        try:
            return task(workdir, spec, *args, progress=tracker, **kwargs)
        except FreezeError:
            raise
        except (MemoryError, tf.errors.ResourceExhaustedError):
            raise ResourceExhausted("the task ran out of memory while %s: the upload needs more than this server "
                                    "gives one task (tffreeze serve --task-memory-bytes)" % _stage_words(tracker.stage),
                                    "ERROR_REASON_MEMORY_LIMIT", stage=freeze_pb2.Stage.Name(tracker.stage)) from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ResourceExhausted("the server's disk is full (%s) while %s; free space in its --data-dir or "
                                        "retry later" % (exc.strerror, _stage_words(tracker.stage)),
                                        "ERROR_REASON_STORE_FULL") from None
            traceback.print_exc(file=sys.stderr)
            raise FailedPrecondition("the engine could not read or write a file while %s (%s); re-upload the files "
                                     "or report it" % (_stage_words(tracker.stage), exc.strerror or type(exc).__name__),
                                     "ERROR_REASON_GRAPH_UNSUPPORTED", stage=freeze_pb2.Stage.Name(tracker.stage)) from None
        except Exception as exc:  # noqa: BLE001 - reported, with its step, instead of INTERNAL
            traceback.print_exc(file=sys.stderr)
            stage = _stage_words(tracker.stage)
            detail = without_paths(" ".join(str(exc).split()))[:300]
            raise FailedPrecondition(
                "the engine could not process this graph while %s (%s%s). This graph uses something tffreeze "
                "does not handle yet; name other outputs, or report it with the upload."
                % (stage, type(exc).__name__, ": " + detail if detail else ""), "ERROR_REASON_GRAPH_UNSUPPORTED",
                stage=freeze_pb2.Stage.Name(tracker.stage), error=type(exc).__name__) from None
    return run


@_guarded
def freeze(workdir: str, spec: FreezeSpec, out_path: str, progress: Progress = _noop,
           recipe: Optional[list] = None, on_plan: Optional[Callable[[list], None]] = None) -> freeze_pb2.FreezeResult:
    """Freeze the upload in ``workdir``; write the GraphDef to ``out_path``. Returns
    the FreezeResult (provenance.server is left to the client). ``recipe``: a list
    that receives how the output is made of uploaded-file and graph byte ranges
    (``splice.write_graph``), when values were spliced; ``on_plan`` receives, before
    the writing starts, the same output as literal bytes and file ranges."""
    if spec.format:  # the file is the converted model: no recipe of the GraphDef's bytes
        spec.limits.require_sandbox("format %s (the converted model is run to check it)" % spec.format)
        recipe, on_plan = None, None
    progress(freeze_pb2.STAGE_SELECTING_CHECKPOINT, "looking at the upload", 0.05)
    loaded = load(workdir, spec, progress=progress)
    if loaded.kind == freeze_pb2.SOURCE_KIND_FROZEN_GRAPH:
        raise NotFound("SOURCE is a graph without variables (frozen already): use it as it is (the inspect command "
                       "summarises it). To freeze a checkpoint, pass its folder as SOURCE",
                       "ERROR_REASON_CHECKPOINT_NOT_FOUND")
    progress(freeze_pb2.STAGE_LOADING_GRAPH, "reading the graph", 0.1)
    result = freeze_pb2.FreezeResult(source_kind=loaded.kind, target=target_enum(spec.target))
    result.checkpoint.CopyFrom(loaded.checkpoint)
    warnings = list(loaded.warnings)
    notes: List[str] = []  # what the options asked for did (FreezeResult.notes)
    r = _resolve(loaded, spec, warnings)
    others = ([n for n in loaded.signature_names if n != r.signature]
              if loaded.kind == freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2 else None)
    with naming_outputs(r.res.outputs, others):
        original = r.pruned  # for the verify option: the model before binding and conversion
        graph_def, bindings = _bind(r, spec, result)
        _check_ops(graph_def)
        if tables.freeze_tables(graph_def, loaded.meta.graph_def, warnings, loaded.reader):
            graph_def = rewrite.prune(graph_def, [node_of(t) for t, _ in r.res.outputs])
            original = type(original)()
            original.CopyFrom(r.pruned)
            tables.freeze_tables(original, loaded.meta.graph_def, [], loaded.reader)  # verify runs it without initialisers
        tables.refuse_resource_inputs(graph_def)

        values: Dict[str, Tuple[np.ndarray, int]] = {}
        if loaded.reader is None and any(n.op in VARIABLE_OPS for n in graph_def.node):
            raise FailedPrecondition("the outputs need variables but the upload has no checkpoint values "
                                     "(variables/variables.index)", "ERROR_REASON_VARIABLE_VALUE_MISSING")
        entries = None
        if loaded.reader is not None and not spec.verify:  # verify assigns the values: it needs them read
            entries = splice.read_index(os.path.join(workdir, loaded.checkpoint.prefix))
        if loaded.reader is not None:
            values, ema_used, value_warnings = read_values(
                graph_def, loaded.meta.graph_def, loaded.reader,
                variable_keys(loaded.meta.graph_def, loaded.meta.saver_def), spec,
                lambda message, fraction: progress(freeze_pb2.STAGE_READING_VARIABLES, message, fraction),
                entries)
            warnings += value_warnings
            result.ema_variables.extend(ema_used)
        for sw in switches.variable_switches(graph_def):  # a training mode kept in a variable
            if sw.name in values and isinstance(values[sw.name][0], np.ndarray):
                saved = bool(np.asarray(values[sw.name][0]).reshape(-1)[0]) if values[sw.name][0].size else None
                values[sw.name] = (np.asarray(sw.inference_value, dtype=bool).reshape(values[sw.name][0].shape),
                                   values[sw.name][1])
                if saved != sw.inference_value:
                    warnings.append("%s is a training switch kept in a variable, saved %s (mid-training): frozen at "
                                    "its inference value %s" % (sw.name, json.dumps(saved),
                                                                json.dumps(sw.inference_value)))
        rewrite.check_size(values, graph_def, spec.limits.max_graph_bytes)
        progress(freeze_pb2.STAGE_CONVERTING, "turning %d variable(s) into constants" % len(values), 0.65)
        splices: Dict[str, splice.Splice] = {}  # Consts whose bytes stay in the data file until written
        frozen = rewrite.to_constants(graph_def, values, splices) if values else graph_def
        accumulators = rewrite.drop_loop_accumulators(frozen)  # (what a trained TF2 loop keeps for its gradient)
        if accumulators:
            result.notes.append("%d gradient accumulator(s) a trained TF2 loop carried for its backward pass were "
                                "taken out of the loop: inference reads none of them" % accumulators)
        frozen = rewrite.tidy(frozen)
        drawn = randomness.warning(frozen, r.pruned)
        if drawn:
            warnings.append(drawn)
        if splices and (spec.optimize or spec.target):
            splice.materialize(frozen, splices)  # these steps read the values
        result.variables_frozen = len(values) if loaded.reader is not None else loaded.constants
        order = {n.name: i for i, n in enumerate(loaded.meta.graph_def.node)}
        inputs, input_warnings = _inputs_of(frozen, r.res.inputs, order)
        warnings += input_warnings
        try:
            _reject_training(frozen, named=bool(spec.outputs), warnings=warnings)
        except FreezeError as exc:  # a training branch the user's own --bind selected: say so, and the fix
            inference = {sw.name: sw.inference_value for sw in switches.find_switches(r.pruned)}
            chosen = [(name, value, inference.get(name)) for name, value in spec.bind.items()
                      if inference.get(name) is not None and value is not None and value != inference[name]]
            kept = [(name, inference.get(name)) for name, value in spec.bind.items()
                    if value is None and inference.get(name) is not None]
            if exc.reason == "ERROR_REASON_TRAINING_OP_NEEDED" and kept and not chosen:
                name, wanted = kept[0]
                raise FailedPrecondition(
                    "%s is kept an input (options.bind %s=), and it selects what the model does in training too: "
                    "that branch updates variables (%s), which become constants in a frozen graph. Bind it to its "
                    "inference value (options.bind %s=%s), or leave it out of the bind option (it is bound so by "
                    "default)" % (name, name, exc.metadata.get("nodes", "").replace(",", ", ")[:300], name,
                                  json.dumps(wanted)), "ERROR_REASON_TRAINING_OP_NEEDED", field="options.bind",
                    name=name) from None
            if exc.reason != "ERROR_REASON_TRAINING_OP_NEEDED" or not chosen:
                raise
            name, value, wanted = chosen[0]
            raise FailedPrecondition(
                "%s=%s selects what the model does in training: the outputs then update variables (%s). "
                "Bind it to its inference value (options.bind %s=%s), or leave it to the default" % (
                    name, json.dumps(value), exc.metadata.get("nodes", "").replace(",", ", ")[:300], name,
                    json.dumps(wanted)), "ERROR_REASON_TRAINING_OP_NEEDED", field="options.bind", name=name) from None
        if spec.input_shapes:
            notes += ["input_shape: %s" % w for w in
                         convert_mod.pin_shapes(frozen, spec.input_shapes, [node_of(t) for t, _ in inputs])]
            notes += ["input_shape: %s" % w for w in convert_mod.static_tensor_lists(frozen)]

        if spec.optimize:
            progress(freeze_pb2.STAGE_OPTIMIZING, "inference optimisations", 0.75)
            frozen, done = optimize_mod.optimize(frozen, [node_of(t) for t, _ in inputs],
                                                 [node_of(t) for t, _ in r.res.outputs], in_place=True)
            frozen = rewrite.tidy(frozen)
            notes.append("optimize: " + "; ".join(done))
        if spec.target:
            progress(freeze_pb2.STAGE_TARGETING, "making the graph load in %s" % spec.target, 0.8)
            notes += ["target %s: %s" % (spec.target, n) for n in
                         tensorflowsharp.make_loadable(frozen, tensorflowsharp.RUNTIMES[spec.target])]
        else:
            tensorflowsharp.strip_defaults(frozen)  # older runtimes load what they can
        issues = tensorflowsharp.incompatibilities(frozen)
        result.loads_in_tensorflowsharp = not issues
        result.tensorflowsharp_issues.extend(issues[:20])
        issues = tensorflowsharp.incompatibilities(frozen, tensorflowsharp.TF23)
        result.loads_in_tensorflow_2_3 = not issues
        result.tensorflow_2_3_issues.extend(issues[:20])

        progress(freeze_pb2.STAGE_CHECKING, "checking the frozen graph imports", 0.85)
        graph = _type_checked(frozen)
        result.inputs.extend(_describe(graph, frozen, inputs))
        result.outputs.extend(_describe(graph, frozen, r.res.outputs))
        if r.signature:
            _signature_map(result, graph, frozen, loaded.meta.signature_def[r.signature], r.signature)

        if spec.verify:
            spec.limits.require_sandbox("verify")
            progress(freeze_pb2.STAGE_VERIFYING, "running original and frozen graphs on generated inputs", 0.9)
            # TensorFlow's import adds every default-valued attribute to the GraphDef it is given, in
            # place: take them out again, so the verified graph is the bytes a plain freeze writes (older
            # runtimes refuse attributes they do not know; the manifest's loads_in_* describe these bytes).
            attrs = {n.name: set(n.attr) for n in frozen.node}
            result.verification.extend(_verify(r, spec, original, values, bindings, frozen, result))
            for n in frozen.node:
                for key in set(n.attr) - attrs.get(n.name, set(n.attr)):
                    del n.attr[key]

    progress(freeze_pb2.STAGE_WRITING, "serializing the frozen graph", 0.95)
    result.node_count = len(frozen.node)
    tmp = out_path + ".part"
    if splices:
        planned = splice.planned_size(frozen, splices)
        if planned > spec.limits.max_graph_bytes:
            raise ResourceExhausted("the frozen graph would be %d bytes, over protobuf's 2 GB limit" % planned,
                                    "ERROR_REASON_GRAPH_TOO_LARGE")
        with open(tmp, "wb") as fh:  # framing around byte ranges of the data file, crc32c-checked
            result.sha256, result.size_bytes = splice.write_graph(frozen, splices, fh, recipe, workdir, on_plan)
    else:
        data = frozen.SerializeToString(deterministic=True)
        del frozen
        if len(data) > spec.limits.max_graph_bytes:
            raise ResourceExhausted("the frozen graph is %d bytes, over protobuf's 2 GB limit" % len(data),
                                    "ERROR_REASON_GRAPH_TOO_LARGE")
        with open(tmp, "wb") as fh:
            write_all(fh, data)
        result.sha256 = hashlib.sha256(data).hexdigest()
        result.size_bytes = len(data)
    os.replace(tmp, out_path)
    result.format = format_enum(spec.format)
    if spec.format:
        _convert(spec, out_path, result, progress)
    result.warnings.extend(warnings)
    result.notes.extend(notes)
    result.provenance.tensorflow_version = tf.__version__
    return result


def _convert(spec: FreezeSpec, out_path: str, result, progress: Progress) -> None:
    """Replace the frozen GraphDef at ``out_path`` by the format option's model, converted,
    run in its runtime and compared (``convert``); the result then describes that file."""
    progress(freeze_pb2.STAGE_EXPORTING, "converting to %s and running it in its runtime" % spec.format, 0.97)
    with open(out_path, "rb") as fh:
        graph_def = graph_pb2.GraphDef.FromString(fh.read())
    oppolicy.check(graph_def, "the frozen graph")
    model, conversion = convert_mod.convert(spec.format, graph_def, result.inputs, result.outputs)
    del graph_def
    if len(model) > spec.limits.max_graph_bytes:
        raise ResourceExhausted("the %s model is %d bytes, over the 2 GB limit" % (spec.format, len(model)),
                                "ERROR_REASON_GRAPH_TOO_LARGE")
    tmp = out_path + ".part"
    with open(tmp, "wb") as fh:
        write_all(fh, model)
    os.replace(tmp, out_path)
    result.sha256 = hashlib.sha256(model).hexdigest()
    result.size_bytes = len(model)
    result.conversion.CopyFrom(conversion)


def _type_checked(frozen) -> tf.Graph:
    """Import the frozen graph (large constants left out) and build every function
    in its library (loop bodies, cond branches) the way TensorFlow instantiates
    them: a node whose inputs no longer have the types its op wants fails here,
    named, instead of when a user runs the graph. Nothing is executed."""
    from tensorflow.python.framework import function_def_to_graph

    skeleton = rewrite.skeleton(frozen)
    graph = tf.Graph()
    where = "the graph"
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(skeleton, name="")
            for func in skeleton.library.function:
                where = "function %s" % func.signature.name
                function_def_to_graph.function_def_to_graph(func)
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        text = tf_errors.describe(exc, limit=500)
        raise FailedPrecondition(
            "the frozen graph would not run: in %s, %s. This is a tffreeze limitation with this graph; "
            "report it with the upload, or name other outputs." % (where, text),
            "ERROR_REASON_GRAPH_DOES_NOT_RUN", function=where) from None
    return graph


def _signature_map(result, graph, frozen, sig, name: str) -> None:
    """The signature's aliases -> frozen tensors still in the graph (name, dtype, shape)."""
    present = {n.name for n in frozen.node}
    described = {t.name: t for t in list(result.inputs) + list(result.outputs)}
    result.signature.name = name
    for aliases, into in ((sig.inputs, result.signature.inputs), (sig.outputs, result.signature.outputs)):
        for alias in sorted(aliases):
            t = aliases[alias].name
            t = t if ":" in t else t + ":0"
            if node_of(t) not in present:
                continue
            info = described.get(t) or _describe(graph, frozen, [(t, "")])[0]
            entry = into[alias]
            entry.name, entry.dtype = info.name, info.dtype
            if info.HasField("shape"):
                entry.shape.CopyFrom(info.shape)


def _verify(r: Resolved, spec: FreezeSpec, original, values, bindings, frozen, result) -> list:
    try:
        return _run_verification(r, spec, original, values, bindings, frozen, result)
    except tf.errors.ResourceExhaustedError:
        raise
    except tf.errors.OpError as exc:
        raise FailedPrecondition("verify could not run the graphs on generated inputs: %s. The frozen graph "
                                 "was not checked; freeze without verify, or check it on real inputs with a "
                                 "runner." % tf_errors.describe(exc), "ERROR_REASON_VERIFY_FAILED",
                                 node=getattr(exc.node_def, "name", None) if exc.node_def else None) from None


def _run_verification(r: Resolved, spec: FreezeSpec, original, values, bindings, frozen, result) -> list:
    infos = [{"name": t.name, "dtype": t.dtype, "shape": _shape_list(t)} for t in result.inputs]
    feeds = verify_mod.generate_inputs(infos)
    fetches = [t.name for t in result.outputs]
    oppolicy.check(frozen, "the frozen graph")
    got = verify_mod.run_graph_def(frozen, feeds, fetches)
    loaded = r.loaded
    if loaded.kind == freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2:
        model = load_checked_saved_model(loaded)  # the copy the loader checked, rewriters off
        func = model.signatures[r.signature]
        sig = loaded.meta.signature_def[r.signature]
        alias_in = {sig.inputs[a].name: a for a in sig.inputs}
        alias_out = {sig.outputs[a].name: a for a in sig.outputs}
        out = func(**{alias_in[k]: tf.constant(v) for k, v in feeds.items()})
        want = [out[alias_out[name]].numpy() for name in fetches]
    else:
        oppolicy.check(original, "the original graph")
        original_feeds = dict(feeds)
        for b in bindings:
            original_feeds[b["name"]] = np.asarray(b["value"])
        want = verify_mod.run_graph_def(original, original_feeds, fetches, assign=values)
    # held to a tolerance in the session our runners create; the manifest carries the setting when one is needed
    try:
        found = verify_mod.runtime_check(fetches, want, got,
                                         lambda setting: verify_mod.run_graph_def(frozen, feeds, fetches, setting=setting))
    except FailedPrecondition as exc:  # random outputs differ between any two runs: say so, not a wrong freeze
        drawn = randomness.random_nodes(frozen, original)
        if exc.metadata.get("cause") != "graph":
            raise
        if not drawn:  # a dropout whose keep-prob is an input left unbound: verify fed it a generated value
            switched, deciding = randomness.switching_inputs(frozen, original)
            if not switched or not deciding:
                raise
            binds = " ".join("options.bind %s=%s" % (name, randomness.inference_value(name, original))
                             for name in deciding)
            fed = ", ".join("%s=%s" % (name, _fed_words(feeds.get(name + ":0", feeds.get(name))))
                            for name in deciding)
            raise FailedPrecondition(
                "verify: the outputs are random: they depend on %s, which draw%s new numbers on every run unless the "
                "input%s %s %s the value that turns %s off; verify fed %s, so the checkpoint's graph gives other "
                "outputs on every run too (%s differs by %s): not a wrong freeze. Bind %s to %s inference value "
                "(%s) and verify again" % (
                    randomness.listing(switched), "s" if len(switched) == 1 else "", "s" if len(deciding) > 1 else "",
                    ", ".join(deciding),
                    "get" if len(deciding) > 1 else "gets", "them" if len(switched) > 1 else "it", fed,
                    exc.metadata.get("output", "an output"), exc.metadata.get("max_abs_diff"),
                    "them" if len(deciding) > 1 else "it", "their" if len(deciding) > 1 else "its", binds),
                "ERROR_REASON_VERIFY_MISMATCH", cause="random", nodes=",".join(n for n, _ in switched[:20]),
                inputs=",".join(deciding), output=exc.metadata.get("output", "")) from None
        raise FailedPrecondition(
            "verify: the outputs are random: they depend on %s, which draw new numbers on every run, so the "
            "checkpoint's graph gives other outputs on every run too (%s differs by %s). Rebuild the graph with "
            "the dropout or noise off (training=False, or rate 0) and save it with the checkpoint, or build it "
            "with a switch that options.bind sets to its inference value"
            % (randomness.listing(drawn), exc.metadata.get("output", "an output"), exc.metadata.get("max_abs_diff")),
            "ERROR_REASON_VERIFY_MISMATCH", cause="random", nodes=",".join(n for n, _ in drawn[:20]),
            output=exc.metadata.get("output", "")) from None
    if found.setting is not None:
        result.session_config = found.setting.SerializeToString(deterministic=True)
        result.session_config_passes_off.extend(found.passes_off)
        result.notes.extend(found.notes)
    return [freeze_pb2.OutputCheck(name=c["name"], max_abs_diff=c["max_abs_diff"], tolerance=c["tolerance"],
                                   default_session_max_abs_diff=c.get("default_session_max_abs_diff"))
            for c in found.checks]


def _fed_words(value) -> str:
    """A value verify fed an input, in a few words."""
    if value is None:
        return "a generated value"
    value = np.asarray(value)
    return ("%.3g" % value.item() if value.dtype.kind == "f" else str(value.item())) if value.size == 1 \
        else "generated values"


def _shape_list(info) -> Optional[List[int]]:
    return [int(v.number_value) for v in info.shape.values] if info.HasField("shape") else None


# -- inspect ---------------------------------------------------------------------------
def _tensor_info(info, node, by_name=None) -> None:
    """Fill a TensorInfo's dtype, shape and default from the node's attributes, for the output
    the tensor name picks (nothing is imported)."""
    if node is None:
        return
    index = split_tensor(info.name)[1]
    info.dtype = _attr_dtype(node, index)
    shape = _attr_shape(node, index)
    if shape is not None:
        _set_shape(info, shape)
    _default_of(info, node, by_name or {})


@_guarded
def inspect(workdir: str, spec: FreezeSpec, progress: Progress = _noop) -> freeze_pb2.InspectResponse:
    """Describe the upload in ``workdir``: variables, candidate inputs and outputs
    (with reasons), signatures, collections, switches, EMA shadows."""
    progress(freeze_pb2.STAGE_SELECTING_CHECKPOINT, "looking at the upload", 0.1)
    loaded = load(workdir, spec, require_graph=False, progress=progress)
    progress(freeze_pb2.STAGE_LOADING_GRAPH, "reading the graph", 0.2)  # (ends a TF2 SavedModel's loading stage)
    out = freeze_pb2.InspectResponse(source_kind=loaded.kind, available_checkpoints=loaded.available)
    out.checkpoint.CopyFrom(loaded.checkpoint)
    out.provenance.tensorflow_version = tf.__version__
    warnings = list(loaded.warnings)
    graph_of_key: Dict[str, str] = {}
    reader = loaded.reader
    if loaded.kind == freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2:
        warnings.append("TF2 SavedModel: inputs and outputs come from the signature; variables are listed by "
                        "checkpoint key")
        reader = open_reader(loaded.export_dir, "variables/variables")
    if loaded.meta is not None:
        meta = loaded.meta
        mapping = variable_keys(meta.graph_def, meta.saver_def)
        graph_of_key = {ref.key: var for var, ref in mapping.items()}
        by_name = nodes_by_name(meta.graph_def)
        structure = structure_of(meta)  # (shared by the candidates and the evidence)
        listed = candidate_records(meta, structure)
        for e in listed:
            _tensor_info(out.candidates.add(name=e.tensor, reason=tidy(e.why)), by_name.get(node_of(e.tensor)))
        try:
            r = _resolve(loaded, spec, warnings, refuse_ambiguous=False, refuse_unsafe=False)
        except FreezeError as exc:  # no outputs to describe: the candidates say what there is
            if exc.reason != "ERROR_REASON_NO_OUTPUTS_FOUND":
                raise
            warnings.append(exc.message)
            r = None
        if r is not None:
            ins = r.res.inputs if r.res.inputs is not None else [
                ("%s:0" % n.name, "placeholder the outputs depend on") for n in rewrite.placeholders(r.pruned)]
            if r.res.inputs is not None:  # the placeholders a freeze would add beside the resolved inputs
                named = {node_of(t) for t, _ in ins}
                ins = list(ins) + [("%s:0" % n.name, "placeholder the outputs depend on")
                                   for n in rewrite.placeholders(r.pruned) if n.name not in named]
            try:  # what a freeze with these options binds is not an input (the same step as freeze)
                scratch = freeze_pb2.FreezeResult()
                bound_graph, bindings = _bind(r, spec, scratch)
                out.bindings.extend(scratch.bindings)
            except FreezeError as exc:
                bound_graph, bindings = None, []
                warnings.append("a freeze with these options would be refused: %s" % exc.message)
            drawn = randomness.warning(bound_graph if bound_graph is not None else r.pruned, r.pruned)
            if drawn:
                warnings.append(drawn)
            bound = {node_of(b["name"]) for b in bindings}
            ins = [(t, why) for t, why in ins if node_of(t) not in bound]
            by_name = {**nodes_by_name(meta.graph_def), **nodes_by_name(r.pruned)}
            imported = _imported_quietly(bound_graph)
            for named, into in ((ins, out.inputs), (r.res.outputs, out.outputs)):
                for tensor_name, reason in named:
                    info = into.add(name=tensor_name, reason=tidy(reason))
                    _tensor_info(info, by_name.get(node_of(tensor_name)), by_name)
                    _inferred(info, imported)
            for sw in switches.find_switches(r.pruned):
                info = out.switches.add(name=sw.name + ":0", dtype=dtype_name(sw.dtype))
                if sw.inference_value is not None:
                    _to_value(info.inference_value, sw.inference_value)
            keys = set(reader.get_variable_to_dtype_map()) if reader is not None else set()
            shadow_key, average_keys = averages_in_keys(meta.graph_def, mapping, dict(spec.var_map), keys)
            lacking, held = [], []
            for node in r.pruned.node:
                if node.op in VARIABLE_OPS:
                    key = mapping[node.name].key if node.name in mapping else node.name
                    if holds_averages(node.name, key, shadow_key, average_keys, keys):
                        out.ema_shadows.append(node.name)  # (one restored from its shadow holds the averages)
                    initial = node.name in spec.exclude_variables or (
                        spec.include_variables and node.name not in spec.include_variables)  # not restored
                    if not initial:
                        (held if node.name in spec.var_map or key in keys else lacking).append(node.name)
            if reader is not None and lacking and loaded.kind != freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2:
                partial = computed_from(r.pruned, held, lacking)  # what a freeze says, said before it
                warnings.append("the checkpoint has no value for %s, which these outputs need (a partial save?): a "
                                "freeze of them is refused%s" % (
                                    ", ".join(lacking[:10]), "; the saved variables alone compute %s"
                                    % ", ".join(partial) if partial else ""))
        if not spec.outputs:  # the evidence for and against each output and candidate
            about = {t.name for t in out.outputs} | {t.name for t in out.candidates}
            for e in explain(meta, r.signature if r is not None else None, structure, listed):
                if e.tensor in about:
                    out.evidence.add(tensor=e.tensor, claim=e.claim.label, weight=e.weight, rule=e.rule,
                                     why=tidy(e.why), nodes=e.nodes)
        out.signatures.extend(loaded.signature_names or sorted(meta.signature_def))
        for name in sorted(meta.signature_def):
            _signature_info(out.signature_defs.add(name=name), meta.signature_def[name])
        out.collections.extend(user_collections(meta))
        if loaded.kind == freeze_pb2.SOURCE_KIND_FROZEN_GRAPH:
            _summarise(out.graph, meta.graph_def, os.path.getsize(os.path.join(workdir, spec.graph_path)))
    for tags in loaded.tag_sets:
        out.tag_sets.add(tags=tags)
    if reader is not None:
        dtypes = reader.get_variable_to_dtype_map()
        shapes = reader.get_variable_to_shape_map()
        for key in sorted(dtypes):
            if key == "_CHECKPOINTABLE_OBJECT_GRAPH":  # TF2's bookkeeping of the object graph, not a variable
                continue
            v = out.variables.add(checkpoint_key=key, dtype=dtype_name(dtypes[key]),
                                  graph_variable=graph_of_key.get(key, ""))
            _set_shape(v, tf.TensorShape(shapes[key]))
    out.warnings.extend(warnings)
    return out


def _imported_quietly(graph_def) -> Optional[tf.Graph]:
    """The bound graph imported as a freeze imports it (its op check first), for the shapes
    TensorFlow infers; None when it does not import (inspect then keeps the attributes')."""
    if graph_def is None or oppolicy.unsafe_nodes(graph_def):
        return None  # never imported: shape inference would evaluate what the op check refuses
    try:
        _check_ops(graph_def)
        return _type_checked(graph_def)
    except FreezeError:
        return None


def _inferred(info, graph: Optional[tf.Graph]) -> None:
    if graph is None:
        return
    try:
        t = graph.get_tensor_by_name(info.name)
    except (KeyError, ValueError):
        return
    info.dtype = dtype_name(t.dtype)
    _set_shape(info, t.shape)


def _signature_info(into, sig) -> None:
    """A signature's aliases -> tensors of the graph as saved (name, dtype, shape)."""
    for aliases, side in ((sig.inputs, into.inputs), (sig.outputs, into.outputs)):
        for alias in sorted(aliases):
            t = aliases[alias]
            entry = side[alias]
            entry.name = t.name if ":" in t.name else t.name + ":0"
            entry.dtype = dtype_name(t.dtype) if t.dtype else ""
            if t.HasField("tensor_shape") and not t.tensor_shape.unknown_rank:
                _set_shape(entry, tf.TensorShape(t.tensor_shape))


_WEIGHT_DTYPES = {types_pb2.DT_FLOAT, types_pb2.DT_HALF, types_pb2.DT_DOUBLE, types_pb2.DT_BFLOAT16}


def _summarise(summary, graph_def, size_bytes: int) -> None:
    """A frozen graph in numbers: nodes, ops, parameters (elements of its floating-point
    constants) and whether TensorFlow 1.15 loads it; nothing is imported."""
    counts: Dict[str, int] = {}
    parameters = 0
    for node in graph_def.node:
        counts[node.op] = counts.get(node.op, 0) + 1
        if node.op == "Const" and node.attr["value"].tensor.dtype in _WEIGHT_DTYPES:
            elements = 1
            for d in node.attr["value"].tensor.tensor_shape.dim:
                elements *= max(d.size, 0)
            parameters += elements
    summary.node_count = len(graph_def.node)
    summary.size_bytes = size_bytes
    summary.parameters = parameters
    for op, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        summary.op_counts.add(op=op, count=count)
    issues = tensorflowsharp.incompatibilities(graph_def)
    summary.loads_in_tensorflow_1_15 = not issues
    summary.tensorflow_1_15_issues.extend(issues[:20])


def _attr_dtype(node, index: int = 0) -> str:
    enum = output_dtype_enum(node, index)
    if not enum:
        types = output_types(node)
        enum = types[index] if types and index < len(types) else 0
    return dtype_name(enum) if enum else ""


def _attr_shape(node, index: int = 0) -> Optional[tf.TensorShape]:
    shape = output_shape_proto(node, index)
    return tf.TensorShape(shape) if shape is not None else None


__all__ = ["freeze", "inspect", "dtype_name"]
