"""FreezeSpec: a request's FreezeOptions, validated once, before any file is read.

The servicer builds it (``FreezeSpec.from_options``) at the edge; the engine
takes nothing else. Every malformed option is refused here with
INVALID_ARGUMENT / ERROR_REASON_INVALID_OPTION naming the field. Server
settings that are not options (unsafe verification, the graph-size limit)
travel in ``ServerLimits``. Needs protobuf only: no gRPC, no TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

from tffreeze_api.v1 import freeze_pb2

from ..settings import DEFAULT_MAX_FUNCTION_DEPTH, DEFAULT_MAX_GRAPH_FILE_BYTES, DEFAULT_MAX_GRAPH_NODES
from .errors import FailedPrecondition, option_error
from .graph import TENSOR_RE

PROTOBUF_LIMIT = (1 << 31) - 1
TARGET_TENSORFLOWSHARP = "tensorflowsharp"
TARGET_MLNET = "mlnet"
Bound = Union[bool, float, None]  # a binding's value; None leaves the switch unbound


@dataclass(frozen=True)
class ServerLimits:
    max_graph_bytes: int = PROTOBUF_LIMIT  # the frozen graph written
    max_graph_file_bytes: int = DEFAULT_MAX_GRAPH_FILE_BYTES  # an uploaded .meta / GraphDef / saved_model.pb
    max_graph_nodes: int = DEFAULT_MAX_GRAPH_NODES  # nodes in the uploaded graph, functions included
    max_function_depth: int = DEFAULT_MAX_FUNCTION_DEPTH  # functions calling functions
    sandboxed: bool = False  # workers run in the sandbox: TF2 SavedModel loading and verify may run
    max_import_constant_bytes: int = 0  # a constant TensorFlow would build while importing (0: no limit)

    def require_sandbox(self, needs: str) -> None:
        if not self.sandboxed:
            raise FailedPrecondition(
                "%s runs part of the upload in TensorFlow, which this server only does inside its sandbox, and it "
                "has none (started with --sandbox none, or bubblewrap is not installed). Ask the operator to "
                "install bubblewrap (apt-get install bubblewrap), or freeze without it." % needs,
                "ERROR_REASON_SANDBOX_UNAVAILABLE", needs=needs)


@dataclass(frozen=True)
class FreezeSpec:
    outputs: Tuple[str, ...] = ()
    inputs: Tuple[str, ...] = ()
    step: Optional[int] = None
    checkpoint_prefix: str = ""
    graph_path: str = ""
    signature: str = ""
    tags: Tuple[str, ...] = ()
    bind: Dict[str, Bound] = field(default_factory=dict)
    ema: bool = False
    var_map: Dict[str, str] = field(default_factory=dict)
    include_variables: Tuple[str, ...] = ()
    exclude_variables: Tuple[str, ...] = ()
    optimize: bool = False
    verify: bool = False
    target: str = ""  # "" (the server's TensorFlow) or TARGET_TENSORFLOWSHARP
    format: str = ""  # "" (a GraphDef), "onnx" or "tflite"
    input_shapes: Dict[str, Tuple[int, ...]] = field(default_factory=dict)  # node -> dims (-1 unknown)
    limits: ServerLimits = ServerLimits()

    # Options that shape a graph read as data; a TF2 SavedModel's signature
    # defines its graph, so they do not apply there.
    GRAPH_OPTIONS = ("outputs", "inputs", "graph_path", "bind", "ema", "var_map", "include_variables",
                     "exclude_variables")

    def given(self, name: str) -> bool:
        return bool(getattr(self, name))

    @classmethod
    def from_options(cls, options: freeze_pb2.FreezeOptions, limits: ServerLimits = ServerLimits()) -> "FreezeSpec":
        return cls(
            outputs=_names(options.outputs, "outputs"),
            inputs=_names(options.inputs, "inputs"),
            step=_step(options),
            checkpoint_prefix=_relative(options.checkpoint_prefix, "checkpoint_prefix"),
            graph_path=_relative(options.graph_path, "graph_path"),
            signature=options.signature.strip(),
            tags=tuple(sorted({t.strip() for t in options.tags if t.strip()})),
            bind={_node(k, "bind"): _bound(k, v) for k, v in sorted(options.bind.items())},
            ema=options.ema,
            var_map=_var_map(options.var_map),
            include_variables=tuple(_node(v, "include_variables") for v in options.include_variables if v.strip()),
            exclude_variables=tuple(_node(v, "exclude_variables") for v in options.exclude_variables if v.strip()),
            optimize=options.optimize,
            verify=options.verify,
            target=_target(options.target),
            format=_format(options.format),
            input_shapes=_input_shapes(options.input_shapes),
            limits=limits,
        )


def _names(values, field_name: str) -> Tuple[str, ...]:
    out = []
    for raw in values:
        name = raw.strip()
        if not name:
            continue
        if not TENSOR_RE.match(name):
            raise option_error(field_name, "%r is not a tensor name; write NODE or NODE:INDEX, e.g. 'logits' or "
                                           "'logits:0'" % _cut(raw))
        out.append(name)
    return tuple(out)


def _node(name: str, field_name: str) -> str:
    name = name.strip()
    if not name or not TENSOR_RE.match(name):
        raise option_error(field_name, "%r is not a node name" % _cut(name))
    return name.split(":")[0]


def _step(options) -> Optional[int]:
    if not options.HasField("step"):
        return None
    if options.step < 0:
        raise option_error("step", "%d: a global step is not negative" % options.step)
    return options.step


MAX_PATH_CHARS = 1024  # a whole path
MAX_PATH_PARTS = 32    # folders deep
MAX_NAME_BYTES = 255   # one file or folder name, as file systems allow


def safe_relative_path(path: str) -> bool:
    """A '/'-separated path that stays inside the upload: no leading '/', no '..', '.' or
    empty parts, no backslash or NUL, and within what a file system takes (at most
    MAX_PATH_CHARS characters, MAX_PATH_PARTS parts of at most MAX_NAME_BYTES bytes each).
    The one rule for uploaded file paths and path options."""
    if not path or len(path) > MAX_PATH_CHARS or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    parts = path.split("/")
    return len(parts) <= MAX_PATH_PARTS and all(
        p not in ("", ".", "..") and len(p.encode("utf-8", "surrogatepass")) <= MAX_NAME_BYTES for p in parts)


def _relative(path: str, field_name: str) -> str:
    path = path.strip()
    if path and not safe_relative_path(path.rstrip("/")):
        raise option_error(field_name, "%r is not a '/'-separated path inside the upload" % _cut(path))
    return path.rstrip("/")


def _bound(name: str, value) -> Bound:
    kind = value.WhichOneof("kind")
    if kind in (None, "null_value"):
        return None
    if kind == "bool_value":
        return value.bool_value
    if kind == "number_value" and math.isfinite(value.number_value):
        return value.number_value
    raise option_error("bind", "%s: a binding is a bool, a finite number, or null (leave it unbound), not a %s"
                       % (_cut(name), kind.replace("_value", "")))


def _var_map(entries) -> Dict[str, str]:
    out = {}
    for graph_var, key in sorted(entries.items()):
        if not graph_var.strip() or not key.strip():
            raise option_error("var_map", "%r -> %r: both the graph variable and the checkpoint key are needed"
                               % (_cut(graph_var), _cut(key)))
        out[_node(graph_var, "var_map")] = key.strip()
    return out


def _target(value: int) -> str:
    if value == freeze_pb2.TARGET_UNSPECIFIED:
        return ""
    if value == freeze_pb2.TARGET_TENSORFLOWSHARP:
        return TARGET_TENSORFLOWSHARP
    if value == freeze_pb2.TARGET_MLNET:
        return TARGET_MLNET
    raise option_error("target", "%d is not a Target this server knows" % value)


FORMATS = {freeze_pb2.FORMAT_UNSPECIFIED: "", freeze_pb2.FORMAT_GRAPHDEF: "", freeze_pb2.FORMAT_ONNX: "onnx",
           freeze_pb2.FORMAT_TFLITE: "tflite"}
MAX_RANK = 32


def _format(value: int) -> str:
    if value not in FORMATS:
        raise option_error("format", "%d is not a Format this server knows" % value)
    return FORMATS[value]


def _input_shapes(entries) -> Dict[str, Tuple[int, ...]]:
    out: Dict[str, Tuple[int, ...]] = {}
    for entry in entries:
        node = _node(entry.name, "input_shapes")
        if node in out:
            raise option_error("input_shapes", "%s is given two shapes" % _cut(node))
        if len(entry.dims) > MAX_RANK or any(d < -1 or d >= 2 ** 31 for d in entry.dims):
            raise option_error("input_shapes", "%s: at most %d dimensions, each -1 (unknown) or in [0, 2**31)"
                               % (_cut(node), MAX_RANK))
        out[node] = tuple(entry.dims)
    return out


def format_enum(fmt: str) -> int:
    return {"onnx": freeze_pb2.FORMAT_ONNX, "tflite": freeze_pb2.FORMAT_TFLITE}.get(fmt, freeze_pb2.FORMAT_GRAPHDEF)


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def target_enum(target: str) -> int:
    return {TARGET_TENSORFLOWSHARP: freeze_pb2.TARGET_TENSORFLOWSHARP,
            TARGET_MLNET: freeze_pb2.TARGET_MLNET}.get(target, freeze_pb2.TARGET_UNSPECIFIED)


__all__ = ["FreezeSpec", "ServerLimits", "PROTOBUF_LIMIT", "TARGET_TENSORFLOWSHARP", "target_enum", "format_enum",
           "safe_relative_path"]
