"""What was uploaded, and the graph and values it provides.

Kinds of source:
  saver             Saver checkpoint + its .meta (restore ops read as data)
  graph+checkpoint  Saver checkpoint without .meta + a graph file (--graph)
  saved_model_v1    SavedModelBuilder export: a MetaGraphDef with a saver,
                    handled exactly like ``saver`` (nothing is executed)
  saved_model_v2    tf.saved_model.save / Keras export: an object graph of
                    functions; loaded by TensorFlow (see ``saved_model``)
TF2 object-based checkpoints and Keras weight files are recognised and refused
with an explanation: they carry values but no graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional

import tensorflow as tf
from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow.python.framework import errors as tf_errors

from tffreeze import layout

from .errors import FailedPrecondition, InvalidArgument, NotFound

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
SAVED_MODEL_FILES = layout.SAVED_MODEL_FILES


@dataclass
class Source:
    kind: str
    checkpoint: dict  # prefix, step, meta_graph
    available: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    meta: Optional[meta_graph_pb2.MetaGraphDef] = None
    reader: object = None
    export_dir: Optional[str] = None
    tags: List[str] = field(default_factory=list)


def files_in(workdir: str) -> List[str]:
    out = []
    for root, _, files in os.walk(workdir):
        for name in files:
            out.append(os.path.relpath(os.path.join(root, name), workdir).replace(os.sep, "/"))
    return sorted(out)


def open_reader(workdir: str, prefix: str):
    try:
        return tf.train.load_checkpoint(os.path.join(workdir, prefix))
    except (tf_errors.OpError, ValueError) as exc:
        msg = (getattr(exc, "message", None) or str(exc)).strip()
        raise InvalidArgument(
            "cannot read checkpoint %r: %s. The .index or data files are corrupt or truncated, or do not "
            "belong together; re-upload the files exactly as TensorFlow wrote them."
            % (prefix, msg.splitlines()[0] if msg else type(exc).__name__)) from None


def read_graph_file(path: str, label: str) -> meta_graph_pb2.MetaGraphDef:
    """A MetaGraphDef from a binary or text MetaGraphDef or GraphDef file."""
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
    raise InvalidArgument("%s is not a GraphDef or MetaGraphDef (binary or text); write the graph with "
                          "tf.io.write_graph(sess.graph_def, ...) or tf.train.export_meta_graph" % label)


def _saved_model(workdir: str, files: List[str], options: dict) -> Source:
    name = next(f for f in SAVED_MODEL_FILES if f in files)
    sm = saved_model_pb2.SavedModel()
    path = os.path.join(workdir, name)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        if name.endswith(".pbtxt"):
            text_format.Parse(data.decode("utf-8"), sm)
        else:
            sm.ParseFromString(data)
    except (DecodeError, text_format.ParseError, UnicodeDecodeError) as exc:
        raise InvalidArgument("%s is not a SavedModel (%s); upload the directory tf.saved_model.save wrote"
                              % (name, str(exc).splitlines()[0] if str(exc) else "unparseable")) from None
    if not sm.meta_graphs:
        raise InvalidArgument("%s holds no MetaGraph" % name)
    tags = sorted(options.get("tags") or [])
    tag_sets = [sorted(m.meta_info_def.tags) for m in sm.meta_graphs]
    if tags:
        match = [m for m in sm.meta_graphs if sorted(m.meta_info_def.tags) == tags]
    elif len(sm.meta_graphs) == 1:
        match = list(sm.meta_graphs)
    else:
        match = [m for m in sm.meta_graphs if sorted(m.meta_info_def.tags) == ["serve"]]
    if not match:
        raise NotFound("no MetaGraph with tags %s in the SavedModel; tag sets present: %s (pass --tag)"
                       % (tags or ["serve"], "; ".join(",".join(t) for t in tag_sets)))
    meta = match[0]
    chosen_tags = sorted(meta.meta_info_def.tags)
    ckpt = {"prefix": "variables/variables", "step": None, "meta_graph": name}
    if meta.object_graph_def.nodes:  # TF2: variables live in an object graph of functions
        return Source("saved_model_v2", ckpt, meta=meta, export_dir=workdir, tags=chosen_tags)
    has_vars = os.path.exists(os.path.join(workdir, "variables", "variables.index"))
    reader = open_reader(workdir, "variables/variables") if has_vars else None
    return Source("saved_model_v1", ckpt, meta=meta, reader=reader, export_dir=workdir, tags=chosen_tags)


def _refuse_graphless(workdir: str, files: List[str], sel: Optional[layout.Selection], reader) -> None:
    keras = [f for f in files if f.endswith(layout.KERAS_SUFFIXES)]
    if keras:
        raise FailedPrecondition(str(layout.keras_file_error(keras[0])))
    if reader is not None and reader.has_tensor(OBJECT_GRAPH_KEY):
        raise FailedPrecondition(
            "checkpoint %r is a TF2 object-based checkpoint (tf.train.Checkpoint or Keras save_weights): it "
            "holds variable values keyed by object path, but no graph to freeze. Upload a SavedModel instead "
            "(tf.saved_model.save(model, DIR) or model.export(DIR)), or pass the graph with --graph."
            % sel.checkpoint.prefix)


def open_source(workdir: str, options: dict) -> Source:
    files = files_in(workdir)
    if any(f in files for f in SAVED_MODEL_FILES):
        return _saved_model(workdir, files, options)
    state = None
    if layout.STATE_FILE in files:
        with open(os.path.join(workdir, layout.STATE_FILE), "r", encoding="utf-8", errors="replace") as fh:
            state = fh.read()
    graph_path = options.get("graph_path") or ""
    candidates = [f for f in files if f != graph_path]
    try:
        sel = layout.select(candidates, state, options.get("step"), options.get("checkpoint_prefix") or None)
    except layout.SelectionError as exc:
        raise {"NOT_FOUND": NotFound, "FAILED_PRECONDITION": FailedPrecondition}.get(
            exc.code, InvalidArgument)(str(exc)) from None
    reader = open_reader(workdir, sel.checkpoint.prefix)
    step = sel.checkpoint.step
    if step is None and reader.has_tensor("global_step"):
        try:
            step = int(reader.get_tensor("global_step"))
        except (tf_errors.OpError, IndexError, TypeError, ValueError):
            step = None  # an unreadable value is reported when the variables are read
    ckpt = {"prefix": sel.checkpoint.prefix, "step": step, "meta_graph": sel.checkpoint.meta or ""}
    warnings = list(sel.warnings)
    if graph_path:
        if graph_path not in files:
            raise NotFound("--graph file %r is not among the uploaded files" % graph_path)
        meta = read_graph_file(os.path.join(workdir, graph_path), graph_path)
        ckpt["meta_graph"] = graph_path
        if sel.checkpoint.meta:
            warnings.append("--graph %s is used instead of %s" % (graph_path, sel.checkpoint.meta))
        return Source("graph+checkpoint", ckpt, sel.available, warnings, meta=meta, reader=reader)
    if sel.checkpoint.meta is None:
        _refuse_graphless(workdir, files, sel, reader)
        raise FailedPrecondition(
            "checkpoint %r has no meta graph (.meta file), so there is no graph to freeze. Upload the "
            "PREFIX.meta that tf.train.Saver writes (saver.save(..., write_meta_graph=True)), or pass the graph "
            "separately with --graph FILE (a GraphDef or MetaGraphDef)." % sel.checkpoint.prefix)
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        with open(os.path.join(workdir, sel.checkpoint.meta), "rb") as fh:
            meta.ParseFromString(fh.read())
    except DecodeError as exc:
        raise InvalidArgument("%s is not a MetaGraphDef (%s); upload the .meta file tf.train.Saver wrote"
                              % (sel.checkpoint.meta, exc)) from None
    if not meta.graph_def.node:
        raise InvalidArgument("%s holds an empty graph; upload the .meta file tf.train.Saver wrote"
                              % sel.checkpoint.meta)
    return Source("saver", ckpt, sel.available, warnings, meta=meta, reader=reader)
