"""The format option: the frozen graph converted to ONNX (tf2onnx) or TensorFlow Lite
(TensorFlow's converter, builtin ops only), then **run in its own runtime** (onnxruntime;
LiteRT's interpreter, else TensorFlow's) on the verify option's generated inputs and
compared with the frozen graph run by TensorFlow. A conversion that fails, leaves an op the
runtime cannot load or run, or gives other outputs is refused (FAILED_PRECONDITION,
ERROR_REASON_CONVERSION_FAILED) naming the node and op where the converter or runtime says
which: a model that does not run is never returned.

Runs in a worker, inside the sandbox (it executes the frozen graph, as verify does).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
from importlib import metadata
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from tffreeze_api.v1 import freeze_pb2

from . import verify as verify_mod
from .errors import FailedPrecondition
from .graph import node_of

ATOL, RTOL = 1e-4, 1e-3  # |runtime - frozen| <= ATOL + RTOL * |frozen|, elementwise


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _refuse(fmt: str, message: str, node: str = "", op: str = "") -> FailedPrecondition:
    meta = {"format": fmt}
    if node:
        meta["node"] = node
    if op:
        meta["op"] = op
    return FailedPrecondition(message, "ERROR_REASON_CONVERSION_FAILED", **meta)


@contextlib.contextmanager
def _quiet():
    """tf2onnx and the TFLite converter print progress through logging and stdout."""
    loggers = [logging.getLogger(n) for n in ("tf2onnx", "tensorflow", "absl")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _infos(tensors) -> List[dict]:
    return [{"name": t.name, "dtype": t.dtype,
             "shape": [int(v.number_value) for v in t.shape.values] if t.HasField("shape") else None}
            for t in tensors]


def convert(fmt: str, graph_def, inputs, outputs) -> Tuple[bytes, freeze_pb2.Conversion]:
    """(model bytes, how it was made and checked) for the frozen ``graph_def`` whose inputs
    and outputs are ``inputs``/``outputs`` (TensorInfo messages)."""
    in_names = [t.name for t in inputs]
    out_names = [t.name for t in outputs]
    infos = _infos(inputs)
    feeds = verify_mod.generate_inputs(infos)
    want = verify_mod.run_graph_def(graph_def, feeds, out_names)
    conversion = freeze_pb2.Conversion(
        checked_shapes=["%s=%s" % (n, ",".join(str(d) for d in feeds[n].shape)) for n in in_names])
    if fmt == "onnx":
        model, runtime_in, runtime_out = _to_onnx(graph_def, in_names, out_names, conversion)
        got = _run_onnx(model, runtime_in, runtime_out, feeds, in_names)
    else:
        model, runtime_in, runtime_out = _to_tflite(graph_def, infos, out_names, conversion)
        got = _run_tflite(model, runtime_in, runtime_out, feeds, in_names, conversion)
    for name, runtime_name in zip(in_names, runtime_in):
        conversion.inputs.add(name=name, runtime_name=runtime_name)
    for name, runtime_name in zip(out_names, runtime_out):
        conversion.outputs.add(name=name, runtime_name=runtime_name)
    worst = 0.0
    for name, x, y in zip(out_names, got, want):
        x, y = np.asarray(x), np.asarray(y)
        if x.shape != y.shape:
            raise _refuse(fmt, "the %s model's output %s has shape %s where the frozen graph gives %s on the same "
                               "inputs" % (fmt, name, list(x.shape), list(y.shape)), node_of(name))
        if x.dtype.kind in "fiub" and y.dtype.kind in "fiub":
            xf, yf = x.astype(np.float64), y.astype(np.float64)
            diff = float(np.max(np.abs(xf - yf))) if x.size else 0.0
            ok = bool(np.all(np.abs(xf - yf) <= ATOL + RTOL * np.abs(yf))) if x.size else True
        else:
            ok = np.array_equal(x, y)
            diff = 0.0 if ok else float("inf")
        worst = max(worst, diff)
        if not ok:
            raise _refuse(fmt, "the %s model's output %s differs from the frozen graph's on the same inputs (max "
                               "|difference| %.3g, beyond %g + %g x |value|): the conversion is not exact for this "
                               "graph" % (fmt, name, diff, ATOL, RTOL), node_of(name))
    conversion.max_abs_diff = worst
    return model, conversion


# -- ONNX --------------------------------------------------------------------------------
_ORT_OP = re.compile(r"implementation for (\w+)\(\d+\) node with name '([^']*)'")


def _to_onnx(graph_def, in_names, out_names, conversion) -> Tuple[bytes, List[str], List[str]]:
    import tf2onnx

    try:
        with _quiet():
            model, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=in_names, output_names=out_names)
    except Exception as exc:  # noqa: BLE001 - the converter raises anything; the user gets its words
        text = " ".join(str(exc).split())[:600]
        ops = re.findall(r"[Uu]nsupported ops?: [^\]]*?(\w+)", text)
        raise _refuse("onnx", "tf2onnx cannot convert this graph: %s" % text, op=ops[0] if ops else "") from None
    unconverted = [n for n in model.graph.node if n.domain not in ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")]
    if unconverted:
        n = unconverted[0]
        raise _refuse("onnx", "tf2onnx left node %s (op %s, domain %s) unconverted: onnxruntime cannot run it%s"
                      % (n.name, n.op_type, n.domain, _hint(n.op_type)), n.name, n.op_type)
    conversion.converter = "tf2onnx %s" % _version("tf2onnx")
    conversion.runtime = "onnxruntime %s" % _version("onnxruntime")
    conversion.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return (model.SerializeToString(), [i.name for i in model.graph.input if i.name in in_names] or in_names,
            [o.name for o in model.graph.output])


def _hint(op: str) -> str:
    if op.startswith("TensorList") or op.startswith("TensorArray"):
        return ("; a recurrent layer of TF2 control flow: pin its shapes (--input-shape NAME=D1,D2,...) or export it "
                "with TF1 control flow")
    return ""


def _run_onnx(model: bytes, runtime_in, runtime_out, feeds, in_names) -> List[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's load errors carry the node and op
        text = " ".join(str(exc).split())[:600]
        m = _ORT_OP.search(text)
        raise _refuse("onnx", "onnxruntime cannot load the converted model: %s%s"
                      % (text, _hint(m.group(1)) if m else ""),
                      m.group(2) if m else "", m.group(1) if m else "") from None
    names = [i.name for i in session.get_inputs()]
    try:
        return session.run(runtime_out, {rn: feeds[n] for n, rn in zip(in_names, runtime_in) if rn in names})
    except Exception as exc:  # noqa: BLE001
        raise _refuse("onnx", "onnxruntime cannot run the converted model on the generated inputs: %s"
                      % " ".join(str(exc).split())[:600]) from None


# -- TFLite -------------------------------------------------------------------------------
def _to_tflite(graph_def, infos, out_names, conversion) -> Tuple[bytes, List[str], List[str]]:
    shapes = [(node_of(i["name"]), i["shape"]) for i in infos]
    converter = tf.compat.v1.lite.TFLiteConverter(graph_def, None, None, input_arrays_with_shape=shapes,
                                                  output_arrays=[node_of(n) for n in out_names])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with _quiet():
            model = converter.convert()
    except Exception as exc:  # noqa: BLE001 - the converter's errors name the ops
        text = " ".join(str(exc).split())
        op, node = _tflite_culprit(text)
        hint = _hint(op) if op else ""
        raise _refuse("tflite", "the TFLite converter cannot convert this graph (builtin ops only)%s: %s%s"
                      % (" at node %s (op %s)" % (node, op) if node else " (op %s)" % op if op else "",
                         _tflite_summary(text), hint), node, op) from None
    conversion.converter = "tensorflow %s TFLiteConverter" % tf.__version__
    runtime, _ = _interpreter_class()
    conversion.runtime = runtime
    conversion.opset = 3  # the TFLite flatbuffer schema version
    return model, [node_of(i["name"]) for i in infos], [node_of(n) for n in out_names]


def _tflite_culprit(text: str) -> Tuple[str, str]:
    m = re.search(r"'tf\.(\w+)' op[^\n]*?(?:at|loc)\(\"?([^\"\)]*)", text)
    if m:
        return m.group(1), m.group(2).split("@")[0]
    m = re.search(r"tf\.(\w+)", text)
    return (m.group(1), "") if m else ("", "")


def _tflite_summary(text: str) -> str:
    lines = [ln.strip() for ln in re.split(r"(?<=[.:])\s+(?=[A-Z<'])", text) if "error" in ln.lower() or "op" in ln]
    return (" ".join(lines) if lines else text)[:500]


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter  # LiteRT, where installed

        return "ai-edge-litert %s" % _version("ai-edge-litert"), Interpreter
    except ImportError:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return "tensorflow %s tf.lite.Interpreter" % tf.__version__, tf.lite.Interpreter


def _run_tflite(model: bytes, runtime_in, runtime_out, feeds, in_names, conversion) -> List[np.ndarray]:
    _, interpreter_class = _interpreter_class()
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interp = interpreter_class(model_content=model)
        details = {d["name"]: d for d in interp.get_input_details()}
        for name, runtime_name in zip(in_names, runtime_in):
            d = details.get(runtime_name)
            if d is not None and list(d["shape"]) != list(feeds[name].shape):
                interp.resize_tensor_input(d["index"], list(feeds[name].shape))
        interp.allocate_tensors()
        for name, runtime_name in zip(in_names, runtime_in):
            d = details.get(runtime_name)
            if d is None:
                raise _refuse("tflite", "the TFLite model has no input %s" % runtime_name, runtime_name)
            interp.set_tensor(d["index"], feeds[name].astype(d["dtype"]))
        interp.invoke()
        outs = {d["name"]: d for d in interp.get_output_details()}
        ordered = [outs.get(n) for n in runtime_out]
        if any(d is None for d in ordered):  # the converter renamed them: by position
            ordered = list(interp.get_output_details())
            runtime_out[:] = [d["name"] for d in ordered]
        return [interp.get_tensor(d["index"]) for d in ordered]
    except FailedPrecondition:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _refuse("tflite", "the TFLite interpreter cannot run the converted model: %s"
                      % " ".join(str(exc).split())[:600]) from None


def pin_shapes(graph_def, shapes: Dict[str, Tuple[int, ...]], inputs: List[str]) -> List[str]:
    """Set the ``shape`` of the placeholders named in ``shapes`` (the input_shape option);
    every one must be an input of the frozen graph and agree with its known dimensions.
    Returns what was done, for the warnings."""
    from tensorflow.core.framework import tensor_shape_pb2

    from .errors import option_error

    nodes = {n.name: n for n in graph_def.node}
    done = []
    for name, dims in shapes.items():
        node = nodes.get(name)
        if node is None or node.op not in ("Placeholder", "PlaceholderWithDefault") or name not in inputs:
            raise option_error("input_shapes", "%s is not an input of the frozen graph; its inputs: %s"
                               % (name, ", ".join(inputs) or "none"))
        old = node.attr["shape"].shape
        if not old.unknown_rank and old.dim:
            if len(old.dim) != len(dims) or any(o.size >= 0 and d >= 0 and o.size != d for o, d in zip(old.dim, dims)):
                raise option_error("input_shapes", "%s=%s does not fit its shape %s"
                                   % (name, ",".join(map(str, dims)), [o.size for o in old.dim]))
        node.attr["shape"].shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
            dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]))
        done.append("%s pinned to [%s]" % (name, ", ".join(map(str, dims))))
    return done


__all__ = ["convert", "pin_shapes", "ATOL", "RTOL"]
