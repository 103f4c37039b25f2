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

from . import oppolicy, verify as verify_mod
from .errors import FailedPrecondition, FreezeError
from .graph import node_of
from .oproles import PLACEHOLDER_OPS

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
    and outputs are ``inputs``/``outputs`` (TensorInfo messages). Whatever the converters or
    runtimes raise becomes a refusal naming the format, never an internal error."""
    try:
        return _convert(fmt, graph_def, inputs, outputs)
    except (FreezeError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - third-party converters and runtimes raise anything
        raise _refuse(fmt, "the %s conversion failed: %s" % (fmt, _words(exc))) from None


def _words(exc: BaseException, limit: int = 600) -> str:
    """What an exception says, on one line; never empty (an exception without words is named by its type)."""
    text = " ".join(str(exc).split())[:limit]
    return text or "%s, with no message" % type(exc).__name__


def _convert(fmt: str, graph_def, inputs, outputs) -> Tuple[bytes, freeze_pb2.Conversion]:
    oppolicy.lock_call_configs(graph_def)  # (the caller's copy) functions run as named, in converters too
    in_names = [t.name for t in inputs]
    out_names = [t.name for t in outputs]
    infos = _infos(inputs)
    feeds = verify_mod.generate_inputs(infos)
    try:
        want = verify_mod.run_graph_def(graph_def, feeds, out_names)
    except (tf.errors.OpError, ValueError, TypeError) as exc:
        raise FailedPrecondition(
            "the frozen graph does not run on generated inputs (%s), so a converted model cannot be checked "
            "against it: %s" % (", ".join("%s %s" % (i["name"], list(feeds[i["name"]].shape)) for i in infos),
                                " ".join(str(exc).split())[:500]), "ERROR_REASON_GRAPH_DOES_NOT_RUN") from None
    conversion = freeze_pb2.Conversion(
        checked_shapes=["%s=%s" % (n, ",".join(str(d) for d in feeds[n].shape)) for n in in_names])
    if fmt == "onnx":
        model, runtime_in, runtime_out = _to_onnx(graph_def, in_names, out_names, conversion)
        got = _run_onnx(model, runtime_in, runtime_out, feeds, in_names, graph_def)
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
    except MemoryError:  # the task memory limit's (memlimit), not the graph's
        raise
    except Exception as exc:  # noqa: BLE001 - the converter raises anything; the user gets its words
        text = _words(exc)
        ops = re.findall(r"[Uu]nsupported ops?: [^\]]*?(\w+)", text)
        raise _refuse("onnx", "tf2onnx cannot convert this graph: %s" % text, op=ops[0] if ops else "") from None
    left = _not_onnx(model.graph)
    if left is not None:
        raise _refuse("onnx", "tf2onnx left node %s (op %s) unconverted, although it reported success: no ONNX "
                              "runtime can run it%s" % (left.name, left.op_type, _hint(left.op_type, "onnx")),
                      left.name, left.op_type)
    untyped = _untyped_value(model.graph)
    if untyped is not None:
        node, op = _tf_culprit(graph_def, *untyped)
        raise _refuse("onnx", "tf2onnx converted node %s (op %s) into ONNX, but the tensor list it %s became a "
                              "value of no type (%s), which onnxruntime cannot load (\"Invalid tensor data type 0\")%s"
                      % (node, op, "reads" if "Get" in op or "Stack" in op else "uses", untyped[0],
                         _hint(op if op.startswith("TensorList") else "TensorList", "onnx")), node, op)
    conversion.converter = "tf2onnx %s" % _version("tf2onnx")
    conversion.runtime = "onnxruntime %s" % _version("onnxruntime")
    conversion.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return (model.SerializeToString(), [i.name for i in model.graph.input if i.name in in_names] or in_names,
            [o.name for o in model.graph.output])


def _not_onnx(graph):
    """The first node (loop bodies and branches included) that is no operator of ONNX's
    standard domains: what tf2onnx copies over when it has no conversion for a TF op."""
    import onnx

    for node in graph.node:
        if node.domain in ("", "ai.onnx", "ai.onnx.ml") and not onnx.defs.has(node.op_type, node.domain):
            return node
        if node.domain not in ("", "ai.onnx", "ai.onnx.ml", "com.microsoft"):
            return node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                found = _not_onnx(sub)
                if found is not None:
                    return found
    return None


def _untyped_value(graph):
    """(value name, names of the ONNX nodes using it) for the first value, loop bodies and
    branches included, whose element type tf2onnx left undefined (0): a TF2 tensor list (a
    variant) it passed on as a tensor. None when every value is typed."""
    for values in (graph.input, graph.output, graph.value_info):
        for v in values:
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type == 0:
                users = [n.name for n in graph.node if v.name in n.input or v.name in n.output]
                return v.name, users
    for node in graph.node:
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                found = _untyped_value(sub)
                if found is not None:
                    return found
    return None


def _tf_culprit(graph_def, value: str, users: List[str]) -> Tuple[str, str]:
    """The TF node (name, op) behind ONNX nodes ``users`` of an untyped value: tf2onnx names a
    converted node after the TF node (inside a loop body, after the body function's node
    with the loop's prefix), so the longest TF name ending one of theirs. TensorList ops
    first; else the graph's first TensorList op; else the ONNX value itself."""
    ops = {n.name: n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        for n in fn.node_def:
            ops.setdefault(n.name, n.op)
    found = []
    for user in users:
        for name, op in ops.items():
            if user == name or user.endswith("/" + name):
                found.append((op.startswith("TensorList"), len(name), user, op))
    if found:
        _, _, user, op = max(found)
        if op.startswith("TensorList"):
            return user, op
    lists = [(name, op) for name, op in ops.items() if op.startswith("TensorList")]
    if lists:
        return lists[0]
    return (found[0][2], found[0][3]) if found else (value, "?")


def _hint(op: str, fmt: str) -> str:
    if op.startswith("TensorList") and fmt == "tflite":
        return ("; it comes from TF2 control flow (a while loop writing a tensor list, e.g. a recurrent layer): pin "
                "the input shapes (--input-shape NAME=D1,D2,...) so the lists' element shapes are static")
    if op.startswith("TensorList"):
        return ("; it comes from TF2 control flow (a while loop over a tensor list, e.g. a recurrent layer), which "
                "tf2onnx does not convert: export the model with TF1 control flow "
                "(tf.compat.v1.disable_control_flow_v2()), or use --format tflite (with --input-shape "
                "NAME=D1,D2,... where TFLite asks for the lists' element shapes)")
    if op.startswith("TensorArray") and fmt == "tflite":
        return ("; TFLite runs TF2 control flow only: export the model with control flow v2 "
                "(tf.compat.v1.enable_control_flow_v2()) and pin the input shapes (--input-shape)")
    return ""


def _run_onnx(model: bytes, runtime_in, runtime_out, feeds, in_names, graph_def=None) -> List[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - onnxruntime's load errors carry the node and op
        text = _words(exc)
        m = _ORT_OP.search(text)
        if m is None and graph_def is not None and "data type 0" in text:
            node, op = _tf_culprit(graph_def, "", [])  # an untyped value: a TF2 tensor list, if any
            if op.startswith("TensorList"):
                raise _refuse("onnx", "onnxruntime cannot load the model tf2onnx made of node %s (op %s) and the "
                                      "tensor lists around it: %s%s" % (node, op, text, _hint(op, "onnx")),
                              node, op) from None
        raise _refuse("onnx", "onnxruntime cannot load the converted model: %s%s"
                      % (text, _hint(m.group(1), "onnx") if m else ""),
                      m.group(2) if m else "", m.group(1) if m else "") from None
    names = [i.name for i in session.get_inputs()]
    try:
        return session.run(runtime_out, {rn: feeds[n] for n, rn in zip(in_names, runtime_in) if rn in names})
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _refuse("onnx", "onnxruntime cannot run the converted model on the generated inputs: %s"
                      % _words(exc)) from None


# -- TFLite -------------------------------------------------------------------------------
def _to_tflite(graph_def, infos, out_names, conversion) -> Tuple[bytes, List[str], List[str]]:
    shapes = [(node_of(i["name"]), i["shape"]) for i in infos]
    converter = tf.compat.v1.lite.TFLiteConverter(graph_def, None, None, input_arrays_with_shape=shapes,
                                                  output_arrays=[node_of(n) for n in out_names])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with _quiet():
            model = converter.convert()
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the converter's errors name the ops
        text = _words(exc, 100000)
        op, node = _tflite_culprit(text)
        hint = _hint(op, "tflite") if op else ""
        if op.startswith("TensorList"):
            hint = _pin_hint(infos) or hint
        raise _refuse("tflite", "the TFLite converter cannot convert this graph (builtin ops only)%s: %s%s"
                      % (" at node %s (op %s)" % (node, op) if node else " (op %s)" % op if op else "",
                         _tflite_summary(text), hint), node, op) from None
    conversion.converter = "tensorflow %s TFLiteConverter" % tf.__version__
    runtime, _ = _interpreter_class()
    conversion.runtime = runtime
    conversion.opset = 3  # the TFLite flatbuffer schema version
    return model, [node_of(i["name"]) for i in infos], [node_of(n) for n in out_names]


def _pin_hint(infos) -> str:
    """For a tensor list TFLite needs static: the --input-shape lines to paste, from the inputs'
    shapes (unknown sizes 1: a batch of one); when every input's shape is known already, pinning
    cannot help, and that is said instead."""
    loose = [i for i in infos if i["shape"] is None or any(d < 0 for d in i["shape"])]
    if not infos:
        return ""
    if not loose:
        return ("; it comes from TF2 control flow (a while loop writing a tensor list), and the items it writes "
                "have no static shape even with every input's shape known (%s), so TFLite cannot convert it"
                % ", ".join("%s=%s" % (node_of(i["name"]), ",".join(map(str, i["shape"]))) for i in infos))
    if any(i["shape"] is None for i in loose):
        example = "NAME=D1,D2,..."
    else:
        example = " --input-shape ".join("%s=%s" % (node_of(i["name"]), ",".join(str(d if d >= 0 else 1)
                                                                               for d in i["shape"])) for i in loose)
    return ("; it comes from TF2 control flow (a while loop writing a tensor list, e.g. a recurrent layer): pin the "
            "input shapes so the lists' element shapes are static: --input-shape %s (unknown sizes given as 1 here: "
            "use the sizes you will feed)" % example)


def _tflite_culprit(text: str) -> Tuple[str, str]:
    """(op, node) of the converter's first error: `loc(fused["OP:", "NODE"]): 'tf.OP' op ...`."""
    m = re.search(r'error: loc\(fused\["(\w+):", "([^"]*)"\]\)', text)
    if m:
        return m.group(1), m.group(2)
    m = re.search(r"'tf\.(\w+)' op", text) or re.search(r"tf\.(\w+)", text)
    return (m.group(1), "") if m else ("", "")


def _tflite_summary(text: str) -> str:
    """The converter's first error, without its MLIR location and operation dump."""
    m = re.search(r"error: loc\((?:[^()]|\([^()]*\))*\): (.*?)(?: <unknown>| note:|$)", text)
    return (m.group(1) if m else text)[:400]


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
    except (FailedPrecondition, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001
        raise _refuse("tflite", "the TFLite interpreter cannot run the converted model: %s" % _words(exc)) from None


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
        if node is None or node.op not in PLACEHOLDER_OPS or name not in inputs:
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


def _source_tensor(tensor):
    while tensor.op.type == "Identity" and tensor.op.inputs:
        tensor = tensor.op.inputs[0]
    return tensor


def _source_op(tensor):
    return _source_tensor(tensor).op


def _run_for_item_shapes(graph, readers: Dict[str, str], pinned: Dict[str, List[int]]) -> None:
    """Where shape inference leaves a list's items partly unknown (the loop body broadcasts a
    state of batch 1 with items read from another list, whose element shape says nothing), but
    every input's shape is pinned whole: the graph is run once on zeros of those shapes and the
    items' shape read off what the loop stacked (``readers``: TensorListStack -> its reserve)."""
    wanted = {reader: reserve for reader, reserve in readers.items() if reserve not in pinned}
    if not wanted:
        return
    feeds = {}
    for op in graph.get_operations():
        if op.type in PLACEHOLDER_OPS and op.type != "PlaceholderWithDefault":
            shape = op.outputs[0].shape
            if not shape.is_fully_defined():
                return  # a size left unknown: the items' shape would be one run's, not the model's
            dtype = op.outputs[0].dtype
            if dtype == tf.resource or dtype == tf.variant:
                return
            feeds[op.outputs[0]] = (np.full(shape.as_list(), b"", dtype=object) if dtype == tf.string
                                    else np.zeros(shape.as_list(), dtype.as_numpy_dtype))
    try:
        with tf.compat.v1.Session(graph=graph) as sess:
            stacked = sess.run({reader: graph.get_tensor_by_name(reader + ":0") for reader in wanted}, feeds)
    except (tf.errors.OpError, ValueError, TypeError):
        return
    for reader, value in stacked.items():
        if np.ndim(value) >= 1:
            pinned.setdefault(wanted[reader], list(np.shape(value)[1:]))


def static_tensor_lists(graph_def) -> List[str]:
    """TensorLists reserved with an unknown element shape (TF2 control flow: a while loop
    writing one item per step, as recurrent layers do) get the static shape of the items the
    loop body writes, as TensorFlow infers it from the loop's input shapes (static once the
    input shapes are pinned). Runtimes that lower lists to plain tensors (TFLite) need it.
    Returns what was pinned, for the warnings."""
    from tensorflow.core.framework import function_pb2
    from tensorflow.python.framework import function_def_to_graph

    reserves = {n.name: n for n in graph_def.node if n.op == "TensorListReserve"}
    if not reserves:
        return []
    from .errors import option_error

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except (ValueError, TypeError, tf.errors.OpError) as exc:
        raise option_error("input_shapes", "the graph does not take these shapes: %s"
                           % " ".join(str(exc).split())[:500]) from None
    fdefs = {f.signature.name: f for f in graph_def.library.function}
    pinned: Dict[str, List[int]] = {}
    for op in graph.get_operations():
        if op.type not in ("While", "StatelessWhile"):
            continue
        body = function_pb2.FunctionDef()
        body.CopyFrom(fdefs[op.get_attr("body").name])
        for k in body.arg_attr:  # the shapes recorded at export (batch unknown) give way to the pinned ones
            body.arg_attr[k].attr.pop("_output_shapes", None)
        for arg in list(body.signature.input_arg) + list(body.signature.output_arg):
            arg.ClearField("handle_data")
        try:
            inner = function_def_to_graph.function_def_to_graph(body, input_shapes=[t.shape for t in op.inputs])
        except (ValueError, TypeError):
            continue
        for item_op in inner.get_operations():
            if item_op.type != "TensorListSetItem" or not item_op.inputs[2].shape.is_fully_defined():
                continue
            handle = _source_op(item_op.inputs[0])
            index = next((i for i, t in enumerate(inner.inputs) if t.op is handle), None)
            if index is None or index >= len(op.inputs):
                continue
            reserve = _source_op(op.inputs[index])
            if reserve.type == "TensorListReserve" and reserve.name in reserves:
                pinned[reserve.name] = item_op.inputs[2].shape.as_list()
    # the loop's results read back as tensors (TensorListStack after the loop) name the shape too
    readers = {}
    for op in graph.get_operations():
        if op.type == "TensorListStack":
            t = _source_tensor(op.inputs[0])
            if t.op.type in ("While", "StatelessWhile"):  # a loop's output k is its input k, written
                t = _source_tensor(t.op.inputs[t.value_index])
            if t.op.name in reserves:
                readers[op.name] = t.op.name
    _run_for_item_shapes(graph, readers, pinned)
    readers = {reader: reserve for reader, reserve in readers.items() if reserve in pinned}
    nodes = {n.name: n for n in graph_def.node}
    done, consts = [], {}
    for name, dims in sorted(pinned.items()):
        const = graph_def.node.add(name=name + "/static_element_shape", op="Const")
        const.attr["dtype"].type = tf.int32.as_datatype_enum
        const.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(np.asarray(dims, np.int32)))
        consts[name] = const.name
        nodes[name].input[0] = const.name
        done.append("the tensor list %s holds items of shape [%s]" % (name, ", ".join(map(str, dims))))
    for reader, reserve in readers.items():
        nodes[reader].input[1] = consts[reserve]  # TensorListStack(input_handle, element_shape)
    return done


__all__ = ["convert", "pin_shapes", "static_tensor_lists", "ATOL", "RTOL"]
