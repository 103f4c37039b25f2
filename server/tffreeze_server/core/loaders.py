"""Loaders: what was uploaded, turned into one typed intermediate, ``Loaded``.

One loader per source kind, each returning the same thing — a MetaGraphDef
(graph, signature defs, collections), a checkpoint value reader (or None when
the graph already holds its values), the checkpoint used and notes — so that
``engine`` runs one pipeline after them:

  saver             Saver checkpoint + its .meta (restore ops read as data)
  graph+checkpoint  Saver checkpoint without .meta + a graph file (graph_path)
  saved_model_v1    SavedModelBuilder export: a MetaGraphDef with a saver,
                    handled exactly like ``saver`` (nothing is executed)
  saved_model_v2    tf.saved_model.save / Keras export: loaded by TensorFlow,
                    which runs its restore function (in a worker, in a private
                    working directory); the chosen signature is frozen by
                    ``convert_variables_to_constants_v2`` and presented as a
                    meta graph whose only signature def is that signature
TF2 object-based checkpoints and Keras weight files are recognised and refused:
they carry values but no graph.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow.python.framework import convert_to_constants as c2c
from tensorflow.python.framework import errors as tf_errors

from . import layout
from tffreeze_api.v1 import freeze_pb2

from . import bounds, oppolicy, stages, tables
from .oproles import SAVED_MODEL_SAVER_OPS, VARIABLE_OPS
from .errors import FailedPrecondition, InvalidArgument, NotFound, without_paths
from .spec import FreezeSpec

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"


@dataclass
class Loaded:
    """An upload, read: the same shape whatever its kind."""

    kind: int  # a freeze_pb2.SourceKind value
    checkpoint: freeze_pb2.CheckpointInfo
    meta: Optional[meta_graph_pb2.MetaGraphDef]  # None: values without a graph (inspect only)
    reader: object = None  # checkpoint reader; None when the graph holds its values
    available: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    export_dir: Optional[str] = None  # SavedModels
    tags: List[str] = field(default_factory=list)
    constants: int = 0  # saved_model_v2: variables already turned into constants
    signature_names: List[str] = field(default_factory=list)  # saved_model_v2: all of them, not only the chosen
    tag_sets: List[List[str]] = field(default_factory=list)  # SavedModels: every MetaGraph's tags
    sanitized: bytes = b""  # saved_model_v2: the checked SavedModel TensorFlow loads (``saved_model_dir``)


def files_in(workdir: str) -> List[str]:
    out = []
    for root, _, files in os.walk(workdir):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), workdir).replace(os.sep, "/"))
    return sorted(out)


def _first_line(exc: BaseException) -> str:
    msg = without_paths((getattr(exc, "message", None) or str(exc)).strip())
    return msg.splitlines()[0] if msg else type(exc).__name__


def open_reader(workdir: str, prefix: str):
    try:
        reader = tf.train.load_checkpoint(os.path.join(workdir, prefix))
    except (tf_errors.OpError, ValueError) as exc:
        raise InvalidArgument(
            "cannot read checkpoint %r: %s. The .index or data files are corrupt or truncated, or do not "
            "belong together; re-upload the files exactly as TensorFlow wrote them." % (prefix, _first_line(exc)),
            "ERROR_REASON_CHECKPOINT_CORRUPT", prefix=prefix) from None
    bounds.check_checkpoint(reader, os.path.join(workdir, prefix), prefix)
    return reader


def _graph_invalid(message: str, path: str) -> InvalidArgument:
    return InvalidArgument(message, "ERROR_REASON_GRAPH_INVALID", path=path)


def read_graph_file(path: str, label: str, limit: int) -> meta_graph_pb2.MetaGraphDef:
    """A MetaGraphDef from a binary or text MetaGraphDef or GraphDef file (at most ``limit`` bytes)."""
    bounds.check_file(path, label, limit)
    with open(path, "rb") as fh:
        data = fh.read()
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        meta.ParseFromString(data)
        if meta.graph_def.node and all(n.op for n in meta.graph_def.node):
            return meta
    except DecodeError:
        pass
    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(data)
        if graph.node and all(n.op and n.name for n in graph.node):
            return meta_graph_pb2.MetaGraphDef(graph_def=graph)
    except DecodeError:
        pass
    text = data.decode("utf-8", errors="replace")
    for cls in (meta_graph_pb2.MetaGraphDef, graph_pb2.GraphDef):
        msg = cls()
        try:
            text_format.Parse(text, msg)
        except text_format.ParseError:
            continue
        if isinstance(msg, graph_pb2.GraphDef) and msg.node:
            return meta_graph_pb2.MetaGraphDef(graph_def=msg)
        if isinstance(msg, meta_graph_pb2.MetaGraphDef) and msg.graph_def.node:
            return msg
    shown = label[len(layout.GRAPH_DIR) + 1:] if label.startswith(layout.GRAPH_DIR + "/") else label
    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(data)
        is_saved_model = bool(saved.meta_graphs) and all(m.graph_def.node for m in saved.meta_graphs)
    except DecodeError:
        is_saved_model = False
    if is_saved_model:  # (a saved_model.pb given as the graph file: the SavedModel is the source)
        raise InvalidArgument("the graph file %s is a SavedModel's saved_model.pb, not a GraphDef or MetaGraphDef: "
                              "freeze the SavedModel itself: give the folder that holds it (with its variables/) in "
                              "place of the checkpoint, and leave out the graph option" % shown,
                              "ERROR_REASON_GRAPH_INVALID", path=label, field="options.graph_path")
    raise _graph_invalid("%s is not a GraphDef or MetaGraphDef (binary or text); write the graph with "
                         "tf.io.write_graph(sess.graph_def, ...) or tf.train.export_meta_graph" % shown, label)


def pick_signature(names: List[str], wanted: str, where: str) -> Optional[str]:
    """The one signature picker: ``wanted``, else serving_default, else the only one."""
    names = sorted(names)
    if wanted:
        if wanted not in names:
            raise NotFound("signature %r is not in the %s; signatures: %s"
                           % (wanted, where, ", ".join(names) or "none"), "ERROR_REASON_SIGNATURE_NOT_FOUND",
                           field="options.signature", available=",".join(names))
        return wanted
    if not names:
        return None
    if "serving_default" in names:
        return "serving_default"
    if len(names) == 1:
        return names[0]
    raise NotFound("the %s has several signatures (%s) and none is serving_default; choose one with "
                   "options.signature (e.g. options.signature %s)" % (where, ", ".join(names), names[0]),
                   "ERROR_REASON_SIGNATURE_NOT_FOUND", field="options.signature", available=",".join(names))


# -- one loader per kind --------------------------------------------------------
def load_saver(workdir: str, files: List[str], spec: FreezeSpec, require_graph: bool) -> Loaded:
    """A Saver checkpoint; its graph from its .meta or, given graph_path, from that file."""
    state = None
    if layout.STATE_FILE in files:
        with open(os.path.join(workdir, layout.STATE_FILE), "r", encoding="utf-8", errors="replace") as fh:
            state = fh.read()
    if spec.tags:  # never ignored silently: a Saver checkpoint has one meta graph, no tag sets
        raise InvalidArgument("options.tags does not apply to a Saver checkpoint: only a SavedModel has tag sets "
                              "(a checkpoint's .meta is its one graph); leave it out",
                              "ERROR_REASON_OPTION_NOT_APPLICABLE", field="options.tags",
                              source_kind="SOURCE_KIND_CHECKPOINT")
    candidates = [f for f in files if f != spec.graph_path]
    try:
        sel = layout.select(candidates, state, spec.step, spec.checkpoint_prefix or None)
    except layout.SelectionError as exc:
        cls = {"NOT_FOUND": NotFound, "FAILED_PRECONDITION": FailedPrecondition}.get(exc.code, InvalidArgument)
        raise cls(str(exc), exc.reason) from None
    reader = open_reader(workdir, sel.checkpoint.prefix)
    ckpt = freeze_pb2.CheckpointInfo(prefix=sel.checkpoint.prefix, meta_graph=sel.checkpoint.meta or "")
    step = sel.checkpoint.step
    if step is None and reader.has_tensor("global_step"):
        try:
            step = int(reader.get_tensor("global_step"))
        except (tf_errors.OpError, IndexError, TypeError, ValueError):
            step = None  # an unreadable value is reported when the variables are read
    if step is not None:
        ckpt.step = step
    warnings = list(sel.warnings)
    if spec.graph_path:
        if spec.graph_path not in files:
            raise NotFound("graph_path %r is not among the uploaded files" % spec.graph_path,
                           "ERROR_REASON_GRAPH_INVALID", field="options.graph_path", path=spec.graph_path)
        meta = read_graph_file(os.path.join(workdir, spec.graph_path), spec.graph_path,
                               spec.limits.max_graph_file_bytes)
        # (a checkpoint with no .meta of its own borrowed another step's: the graph file replaces that, unsaid)
        borrowed = [w for w in warnings if w.startswith("no %s.meta; " % sel.checkpoint.prefix)]
        warnings = [w for w in warnings if w not in borrowed]
        if sel.checkpoint.meta and not borrowed:
            shown = spec.graph_path[len(layout.GRAPH_DIR) + 1:] if spec.graph_path.startswith(layout.GRAPH_DIR + "/") \
                else spec.graph_path  # (the name the client gave it, not where it was staged)
            warnings.append("the graph file %s is used instead of %s" % (shown, sel.checkpoint.meta))
        ckpt.meta_graph = spec.graph_path
        return Loaded(freeze_pb2.SOURCE_KIND_GRAPH_AND_CHECKPOINT, ckpt, meta, reader, sel.available, warnings)
    if sel.checkpoint.meta is None:
        if sel.checkpoint.prefix != "variables" or spec.graph_path:
            _refuse_graphless(files, sel, reader)
        if sel.checkpoint.prefix == "variables" and not spec.graph_path:  # SavedModel/variables/variables.index
            # (a TF1 or a TF2 SavedModel's: the object-based checkpoint of tf.saved_model.save too)
            fix = ("holds a checkpoint named 'variables' and no graph, as the variables/ folder inside a "
                   "SavedModel does: give the SavedModel's folder (the one holding saved_model.pb) instead")
            if not require_graph:
                warnings.append("this folder " + fix)
            else:
                raise FailedPrecondition("SOURCE " + fix, "ERROR_REASON_NO_GRAPH", prefix=sel.checkpoint.prefix)
        if not require_graph:
            warnings.append("no graph in the upload: only the checkpoint's variables can be listed")
            return Loaded(freeze_pb2.SOURCE_KIND_CHECKPOINT_ONLY, ckpt, None, reader, sel.available, warnings)
        raise FailedPrecondition(
            "checkpoint %r has no meta graph (.meta file), so there is no graph to freeze. Upload the "
            "PREFIX.meta that tf.train.Saver writes (saver.save(..., write_meta_graph=True)), or upload the graph "
            "separately and name it in graph_path (a GraphDef or MetaGraphDef)." % sel.checkpoint.prefix,
            "ERROR_REASON_NO_GRAPH", prefix=sel.checkpoint.prefix)
    meta = meta_graph_pb2.MetaGraphDef()
    bounds.check_file(os.path.join(workdir, sel.checkpoint.meta), sel.checkpoint.meta, spec.limits.max_graph_file_bytes)
    try:
        with open(os.path.join(workdir, sel.checkpoint.meta), "rb") as fh:
            meta.ParseFromString(fh.read())
    except DecodeError as exc:
        raise _graph_invalid("%s is not a MetaGraphDef (%s); upload the .meta file tf.train.Saver wrote"
                             % (sel.checkpoint.meta, exc), sel.checkpoint.meta) from None
    if not meta.graph_def.node:
        raise _graph_invalid("%s holds an empty graph; upload the .meta file tf.train.Saver wrote"
                             % sel.checkpoint.meta, sel.checkpoint.meta)
    return Loaded(freeze_pb2.SOURCE_KIND_SAVER, ckpt, meta, reader, sel.available, warnings)


def _refuse_graphless(files: List[str], sel: layout.Selection, reader) -> None:
    keras = [f for f in files if f.endswith(layout.KERAS_SUFFIXES)]
    if keras:
        err = layout.keras_file_error(keras[0])
        raise FailedPrecondition(str(err), err.reason)
    if reader is not None and reader.has_tensor(OBJECT_GRAPH_KEY):
        raise FailedPrecondition(
            "checkpoint %r is a TF2 object-based checkpoint (tf.train.Checkpoint or Keras save_weights): it "
            "holds variable values keyed by object path, but no graph to freeze. Upload a SavedModel instead "
            "(tf.saved_model.save(model, DIR) or model.export(DIR)), or upload the graph and name it in "
            "graph_path." % sel.checkpoint.prefix, "ERROR_REASON_GRAPHLESS_FORMAT")


def _read_saved_model(workdir: str, files: List[str], limit: int) -> saved_model_pb2.SavedModel:
    name = next(f for f in layout.SAVED_MODEL_FILES if f in files)
    bounds.check_file(os.path.join(workdir, name), name, limit)
    sm = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(workdir, name), "rb") as fh:
            data = fh.read()
        if name.endswith(".pbtxt"):
            text_format.Parse(data.decode("utf-8"), sm)
        else:
            sm.ParseFromString(data)
    except (DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        raise _graph_invalid("%s is not a SavedModel (%s); upload the directory tf.saved_model.save wrote"
                             % (name, _first_line(exc)), name) from None
    if not sm.meta_graphs:
        raise _graph_invalid("%s holds no MetaGraph" % name, name)
    return sm


def _tags_flags(tag_sets: List[List[str]]) -> str:
    """The options naming a SavedModel's first tag set, as an example ("options.tags serve")."""
    first = next((t for t in tag_sets if t), [])
    return " ".join("options.tags %s" % t for t in first) or "options.tags serve"


def load_saved_model(workdir: str, files: List[str], spec: FreezeSpec, require_graph: bool,
                     progress=None) -> Loaded:
    """A SavedModel directory: TF1 exports are read as data, TF2 exports loaded."""
    sm = _read_saved_model(workdir, files, spec.limits.max_graph_file_bytes)
    name = next(f for f in layout.SAVED_MODEL_FILES if f in files)
    if spec.step is not None:  # never ignored silently: a SavedModel holds one set of variables
        raise InvalidArgument("options.step does not apply to a SavedModel: it holds one set of variables (its "
                              "variables/ folder), not a checkpoint per global step; leave the step out",
                              "ERROR_REASON_OPTION_NOT_APPLICABLE", field="options.step",
                              source_kind="SOURCE_KIND_SAVED_MODEL")
    tags = sorted(spec.tags)
    tag_sets = [sorted(m.meta_info_def.tags) for m in sm.meta_graphs]
    shown = "; ".join(",".join(t) or "(none)" for t in tag_sets)
    # tf.saved_model.load's own rule: its TF2 loader only for exactly one MetaGraph that
    # has an object graph; anything else goes to its TF1 loader, which runs the MetaGraph's
    # restore and init ops. A SavedModel that declares one but would get the other is refused.
    tf2 = len(sm.meta_graphs) == 1 and sm.meta_graphs[0].HasField("object_graph_def")
    if not tf2 and any(m.HasField("object_graph_def") for m in sm.meta_graphs):
        raise FailedPrecondition(
            "%s holds %d MetaGraphs (tag sets: %s), one of them with a TF2 object graph: TensorFlow's loader would "
            "read it as a TF1 SavedModel instead. tf.saved_model.save writes exactly one MetaGraph; re-export the "
            "model with it" % (name, len(sm.meta_graphs), shown), "ERROR_REASON_SAVED_MODEL_AMBIGUOUS",
            tag_sets=shown)
    if len(sm.meta_graphs) > 1 and not tags:
        raise FailedPrecondition(
            "%s holds %d MetaGraphs (tag sets: %s); name the one to freeze with options.tags (e.g. %s)"
            % (name, len(sm.meta_graphs), shown, _tags_flags(tag_sets)), "ERROR_REASON_SAVED_MODEL_AMBIGUOUS",
            field="options.tags", tag_sets=shown)
    if tags:
        match = [m for m in sm.meta_graphs if sorted(m.meta_info_def.tags) == tags]
    elif len(sm.meta_graphs) == 1:
        match = list(sm.meta_graphs)
    else:
        match = [m for m in sm.meta_graphs if sorted(m.meta_info_def.tags) == ["serve"]]
    if not match:
        # (tags is set here: without it, a single MetaGraph matched and several were refused above)
        raise NotFound("the SavedModel has no tag set %s; its tag sets: %s. Name one with options.tags (e.g. %s)"
                       % (",".join(tags), shown, _tags_flags(tag_sets)),
                       "ERROR_REASON_SIGNATURE_NOT_FOUND", field="options.tags", available=shown)
    meta = match[0]
    chosen_tags = sorted(meta.meta_info_def.tags)
    ckpt = freeze_pb2.CheckpointInfo(prefix="variables/variables", meta_graph=name)
    if tf2:
        loaded = _load_saved_model_v2(workdir, ckpt, meta, chosen_tags, spec, progress)
    else:
        if spec.graph_path:  # never ignored silently: the SavedModel's MetaGraph is its graph
            raise InvalidArgument("options.graph_path does not apply to a TF1 SavedModel: its saved_model.pb holds "
                                  "the graph (choose a MetaGraph with options.tags); leave it out, or give a Saver "
                                  "checkpoint with the graph file", "ERROR_REASON_OPTION_NOT_APPLICABLE",
                                  field="options.graph_path", source_kind="SOURCE_KIND_SAVED_MODEL_V1")
        has_vars = os.path.exists(os.path.join(workdir, "variables", "variables.index"))
        reader = open_reader(workdir, "variables/variables") if has_vars else None
        loaded = Loaded(freeze_pb2.SOURCE_KIND_SAVED_MODEL_V1, ckpt, meta, reader, export_dir=workdir,
                        tags=chosen_tags)
    loaded.tag_sets = tag_sets
    return loaded


def _sanitized_saved_model(meta, spec: FreezeSpec) -> bytes:
    """The TF2 SavedModel TensorFlow's loader is given, serialized, after the op check.

    Everything the loader could import or run is checked first: every function of the
    library, called or not (methods, signatures, resource and asset initializers,
    gradients, api_implements families, functions no node calls) and every top-level
    node, with no exception. The saver's nodes and the functions only they reach are
    checked too (the saver's own ops allowed there), then left out: TensorFlow's TF2
    loader restores variables with ops it builds itself, so with them gone no rewrite
    can run them. The config each function call carries has grappler's function
    rewriters turned off (``oppolicy.lock_call_configs``)."""
    bounds.check_graph(meta.graph_def, spec.limits.max_graph_nodes, spec.limits.max_function_depth)
    saver_nodes, saver_functions = oppolicy.saved_model_split(meta)
    found = oppolicy.unsafe_nodes(meta.graph_def, nodes=saver_nodes, functions=saver_functions,
                                  allowed=SAVED_MODEL_SAVER_OPS)
    if found:
        raise oppolicy.refusal(found, "the SavedModel's save/restore part")
    kept = oppolicy.without_saver(meta, saver_nodes, saver_functions)
    oppolicy.check(kept.graph_def, "the SavedModel")
    oppolicy.lock_call_configs(kept.graph_def)
    out = saved_model_pb2.SavedModel()
    out.saved_model_schema_version = 1
    out.meta_graphs.add().CopyFrom(kept)
    return out.SerializeToString()


@contextlib.contextmanager
def saved_model_dir(loaded: "Loaded"):
    """A private folder holding the checked TF2 SavedModel (``Loaded.sanitized``) beside
    links to the upload's variables/ and assets/, for ``tf.saved_model.load``; removed after."""
    folder = tempfile.mkdtemp(prefix="tffreeze-sm-")
    try:
        with open(os.path.join(folder, "saved_model.pb"), "wb") as fh:
            fh.write(loaded.sanitized)
        for name in ("variables", "assets"):
            source = os.path.join(loaded.export_dir, name)
            if os.path.isdir(source):
                os.symlink(os.path.abspath(source), os.path.join(folder, name))
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load_checked_saved_model(loaded: "Loaded"):
    """``tf.saved_model.load`` of the checked copy of a TF2 SavedModel, with grappler's
    function rewriters off in this process (``oppolicy.lock_eager``)."""
    oppolicy.lock_eager()
    with saved_model_dir(loaded) as folder:
        return tf.saved_model.load(folder, tags=loaded.tags or None)


def _load_saved_model_v2(workdir: str, ckpt, meta, tags: List[str], spec: FreezeSpec, progress=None) -> Loaded:
    for name in FreezeSpec.GRAPH_OPTIONS:
        if spec.given(name):
            raise InvalidArgument("options.%s does not apply to a TF2 SavedModel: its signature defines the graph"
                                  % name, "ERROR_REASON_OPTION_NOT_APPLICABLE", field="options." + name,
                                  source_kind="SOURCE_KIND_SAVED_MODEL_V2")
    if not os.path.exists(os.path.join(workdir, "variables", "variables.index")):  # written even without variables
        raise NotFound("SOURCE holds saved_model.pb but no variables/ folder (variables/variables.index and its "
                       "variables.data-* files), which loading a TF2 SavedModel needs: copy the whole folder "
                       "tf.saved_model.save wrote (saved_model.pb, variables/, assets/), not saved_model.pb alone",
                       "ERROR_REASON_CHECKPOINT_NOT_FOUND", paths="variables/variables.index")
    spec.limits.require_sandbox("loading a TF2 SavedModel")
    sanitized = _sanitized_saved_model(meta, spec)
    checked = Loaded(freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2, ckpt, None, export_dir=workdir, tags=tags,
                     sanitized=sanitized)
    if progress is not None:  # its own stage, with its own time limit: the upload's code runs from here
        progress(stages.LOADING_SAVED_MODEL, "loading the TF2 SavedModel (its restore functions and resource "
                 "initialisers run)", 0.08)
    try:
        loaded = load_checked_saved_model(checked)
    except (tf.errors.OpError, ValueError, KeyError, TypeError) as exc:
        raise _graph_invalid("cannot load the SavedModel: %s. Upload the directory tf.saved_model.save wrote "
                             "(saved_model.pb, variables/, assets/)" % _first_line(exc), "saved_model.pb") from None
    sig_name = pick_signature(list(loaded.signatures.keys()), spec.signature, "SavedModel")
    if sig_name is None:
        raise NotFound("the SavedModel has no signatures to freeze; export it with a serving signature "
                       "(tf.saved_model.save(model, DIR, signatures=...) or Keras model.export(DIR))",
                       "ERROR_REASON_SIGNATURE_NOT_FOUND", field="options.signature")
    func = loaded.signatures[sig_name]
    # TFLite converts functional (v2) loops only, with their tensor lists' element shapes made static
    # from the pinned input shapes (convert.static_tensor_lists): kept unlowered for it
    frozen = c2c.convert_variables_to_constants_v2(func, lower_control_flow=spec.format != "tflite")
    graph_def = frozen.graph.as_graph_def()
    # the lookup tables it captured stay resource inputs: filled from their contents instead
    tables.captured_tables([(outer, inner.op.name) for outer, inner in func.graph.captures], graph_def)
    meta = meta_graph_pb2.MetaGraphDef(graph_def=graph_def)
    sig = meta.signature_def[sig_name]
    # Inputs: the signature's keyword arguments, matched to the frozen placeholders.
    _, kwargs = func.structured_input_signature
    alias_of: Dict[str, str] = {(s.name or a): a for a, s in kwargs.items()}
    def described(entry, t):  # name, dtype and shape, as a TF1 signature carries them (inspect shows them)
        entry.name = t.name
        entry.dtype = t.dtype.as_datatype_enum
        entry.tensor_shape.CopyFrom(t.shape.as_proto())

    for t in frozen.inputs:
        if t.dtype != tf.resource:
            described(sig.inputs[alias_of.get(t.op.name) or t.op.name], t)
    # Outputs: a dict's values follow tf.nest's sorted-key order in the frozen function.
    structured = func.structured_outputs
    aliases = sorted(structured) if isinstance(structured, dict) else [
        "output_%d" % i for i in range(len(frozen.outputs))]
    for alias, t in zip(aliases, frozen.outputs):
        described(sig.outputs[alias], t)
    constants = sum(1 for n in graph_def.node if n.op == "Const")
    return Loaded(freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2, ckpt, meta, None, export_dir=workdir, tags=tags,
                  constants=constants, signature_names=sorted(loaded.signatures.keys()), sanitized=sanitized)


def _load_graph_only(workdir: str, spec: FreezeSpec) -> Loaded:
    """SOURCE was one graph file: a frozen graph (no variables) to summarise. A freeze of it
    is refused by the engine; a graph with variables needs its checkpoint."""
    meta = read_graph_file(os.path.join(workdir, spec.graph_path), spec.graph_path, spec.limits.max_graph_file_bytes)
    name = spec.graph_path.split("/")[-1]
    variables = [n.name for n in meta.graph_def.node if n.op in VARIABLE_OPS]
    if variables:
        raise NotFound("%s is a graph with %d variable(s) (%s) but no checkpoint: pass the checkpoint folder as "
                       "SOURCE and this file as the graph option (--graph)" % (name, len(variables), variables[0]),
                       "ERROR_REASON_CHECKPOINT_NOT_FOUND")
    return Loaded(freeze_pb2.SOURCE_KIND_FROZEN_GRAPH, freeze_pb2.CheckpointInfo(meta_graph=name), meta)


def load(workdir: str, spec: FreezeSpec, require_graph: bool = True, progress=None) -> Loaded:
    """Read the upload in ``workdir`` with the loader for its kind; graphs over the
    server's node or nesting limits are refused before anything walks them. ``progress``
    (engine's): told right before the upload's code runs (``stages.LOADING_SAVED_MODEL``)."""
    files = files_in(workdir)
    if any(f in files for f in layout.SAVED_MODEL_FILES):
        loaded = load_saved_model(workdir, files, spec, require_graph, progress)
    elif spec.graph_path and not spec.checkpoint_prefix and spec.graph_path in files and not any(
            f.endswith(".index") for f in files):
        loaded = _load_graph_only(workdir, spec)
    else:
        loaded = load_saver(workdir, files, spec, require_graph)
    if loaded.meta is not None and loaded.kind != freeze_pb2.SOURCE_KIND_SAVED_MODEL_V2:
        bounds.check_graph(loaded.meta.graph_def, spec.limits.max_graph_nodes, spec.limits.max_function_depth)
    return loaded


__all__ = ["Loaded", "load", "load_saver", "load_saved_model", "pick_signature", "read_graph_file", "open_reader",
           "files_in"]
