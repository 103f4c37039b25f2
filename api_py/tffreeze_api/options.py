"""FreezeOptions from user-level values: the one place option strings are parsed.

Clients (the Python library and CLI) hand over what users wrote — names as lists
or comma-separated text, bindings as ``{"is_training": False}`` or
``["is_training=false"]``, variable maps as ``{"G": "K"}`` or ``["G=K"]``, the
target as ``"tensorflowsharp"`` — and get a typed ``tffreeze.v1.FreezeOptions``.
A malformed value raises :class:`OptionError` naming the proto field, before
any file is hashed or any call is made. The server validates the typed message
again (it cannot trust clients), but never parses strings.
"""

from __future__ import annotations

import json
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from google.protobuf import struct_pb2

from .v1 import freeze_pb2

Pairs = Union[Mapping[str, object], Sequence[str], None]

TARGETS = {"": freeze_pb2.TARGET_UNSPECIFIED, "tensorflowsharp": freeze_pb2.TARGET_TENSORFLOWSHARP,
           "mlnet": freeze_pb2.TARGET_MLNET, "tf2.3": freeze_pb2.TARGET_MLNET}
FORMATS = {"": freeze_pb2.FORMAT_UNSPECIFIED, "graphdef": freeze_pb2.FORMAT_GRAPHDEF, "onnx": freeze_pb2.FORMAT_ONNX,
           "tflite": freeze_pb2.FORMAT_TFLITE}

# Request fields -> their spelling on every client's command line. The server puts the flag
# of an error's field in the ErrorInfo metadata ("flag"), so each CLI names it without a table.
FLAGS = {
    "options.outputs": "--outputs", "options.inputs": "--inputs", "options.step": "--step",
    "options.checkpoint_prefix": "SOURCE", "options.graph_path": "--graph", "options.signature": "--signature",
    "options.tags": "--tag", "options.bind": "--bind", "options.ema": "--ema", "options.var_map": "--var-map",
    "options.include_variables": "--include-variables", "options.exclude_variables": "--exclude-variables",
    "options.optimize": "--optimize", "options.verify": "--verify", "options.target": "--target",
    "options.format": "--format", "options.input_shapes": "--input-shape",
}


class OptionError(ValueError):
    """A malformed option. ``field`` is the FreezeOptions field name ("bind")."""

    reason = "ERROR_REASON_INVALID_OPTION"
    code = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def names(value: Union[str, Iterable[str], None]) -> List[str]:
    """'a, b' or ['a', 'b ', ''] -> ['a', 'b']."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if isinstance(v, str) and v.strip()]


def _pairs(value: Pairs, field: str, example: str) -> List[Tuple[str, object]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [(str(k).strip(), v) for k, v in value.items()]
    out = []
    for item in ([value] if isinstance(value, str) else value):
        name, sep, text = str(item).partition("=")
        if not sep or not name.strip():
            raise OptionError(field, "%r: write NAME=VALUE, e.g. %s" % (item, example))
        out.append((name.strip(), text.strip()))
    return out


def bind_value(text: object, name: str = "") -> struct_pb2.Value:
    """A binding's value: a bool, a number, or null (leave the switch unbound).
    Text is read as true/false/yes/no, a JSON number, or '' for null."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return struct_pb2.Value(null_value=struct_pb2.NULL_VALUE)
    if isinstance(text, bool):
        return struct_pb2.Value(bool_value=text)
    if isinstance(text, (int, float)):
        return struct_pb2.Value(number_value=float(text))
    if isinstance(text, str):
        low = text.strip().lower()
        if low in ("true", "yes"):
            return struct_pb2.Value(bool_value=True)
        if low in ("false", "no"):
            return struct_pb2.Value(bool_value=False)
        try:
            number = json.loads(low)
        except ValueError:
            number = None
        if isinstance(number, (int, float)) and not isinstance(number, bool):
            return struct_pb2.Value(number_value=float(number))
    raise OptionError("bind", "%s=%s: a binding is true, false, a number, or empty (leave it unbound)"
                      % (name, text))


def _parse_enum(value: Union[str, int, None], spellings: Mapping[str, int], enum, field: str) -> int:
    """A user's spelling ('' / None / a key of ``spellings``), an enum value name or an enum
    value -> the enum value; OptionError naming ``field`` otherwise."""
    if value is None:
        return spellings[""]
    if isinstance(value, int) and not isinstance(value, bool):
        if value in enum.values():
            return value
    elif isinstance(value, str):
        key = value.strip().lower()
        if key in spellings:
            return spellings[key]
        if value.strip() in enum.keys():
            return enum.Value(value.strip())
    raise OptionError(field, "%r is not a %s; %ss: %s" % (value, field, field, ", ".join(k for k in spellings if k)))


def parse_target(value: Union[str, int, None]) -> int:
    """'' / None / 'tensorflowsharp' / 'mlnet' / a Target enum value -> the enum value."""
    return _parse_enum(value, TARGETS, freeze_pb2.Target, "target")


def parse_format(value: Union[str, int, None]) -> int:
    """'' / None / 'graphdef' / 'onnx' / 'tflite' / a Format enum value -> the enum value."""
    return _parse_enum(value, FORMATS, freeze_pb2.Format, "format")


def format_name(value: int) -> str:
    return next((k for k, v in FORMATS.items() if v == value and k), freeze_pb2.Format.Name(value))


def _input_shapes(value) -> List[freeze_pb2.InputShape]:
    """["x=1,28,28,1", "y=-1,?"] or {"x": [1, 28, 28, 1]} -> InputShape messages."""
    out = []
    for name, dims in _pairs(value, "input_shapes", "x=1,224,224,3"):
        if isinstance(dims, str):
            parts = [d.strip() for d in dims.split(",")] if dims.strip() else []
        elif isinstance(dims, (list, tuple)):
            parts = [str(d).strip() for d in dims]
        else:
            parts = None
        try:
            parsed = [-1 if d in ("?", "-1", "None") else int(d, 10) for d in parts]
        except (TypeError, ValueError):
            parsed = None
        if parsed is None or any(d < -1 or d >= 2 ** 31 for d in parsed):
            raise OptionError("input_shapes", "%s=%s: write NAME=D1,D2,... with dimensions as non-negative "
                                              "integers or -1 (unknown), e.g. x=1,224,224,3" % (name, dims))
        if any(s.name == name for s in out):
            raise OptionError("input_shapes", "%s is given two shapes" % name)
        out.append(freeze_pb2.InputShape(name=name, dims=parsed))
    return out


def target_name(value: int) -> str:
    """The user-level spelling of a Target ('' for the server's TensorFlow)."""
    return next((k for k, v in TARGETS.items() if v == value), freeze_pb2.Target.Name(value))


def freeze_options(outputs=(), inputs=(), step: Optional[int] = None, checkpoint_prefix: str = "",
                   graph_path: str = "", signature: str = "", tags=(), bind: Pairs = None, ema: bool = False,
                   var_map: Pairs = None, include_variables=(), exclude_variables=(), optimize: bool = False,
                   verify: bool = False, target: Union[str, int, None] = None, format: Union[str, int, None] = None,
                   input_shapes: Pairs = None) -> freeze_pb2.FreezeOptions:
    """A typed FreezeOptions; raises OptionError naming the field of a malformed value."""
    opts = freeze_pb2.FreezeOptions(
        outputs=names(outputs), inputs=names(inputs), checkpoint_prefix=(checkpoint_prefix or "").strip(),
        graph_path=graph_path or "", signature=(signature or "").strip(), tags=names(tags), ema=bool(ema),
        include_variables=names(include_variables), exclude_variables=names(exclude_variables),
        optimize=bool(optimize), verify=bool(verify), target=parse_target(target), format=parse_format(format),
        input_shapes=_input_shapes(input_shapes))
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < 2 ** 63:
            raise OptionError("step", "%r: a global step is a non-negative integer below 2**63" % (step,))
        opts.step = step
    for name, value in _pairs(bind, "bind", "is_training=false"):
        opts.bind[name].CopyFrom(bind_value(value, name))
    for name, key in _pairs(var_map, "var_map", "dense/kernel=w"):
        if not name or not isinstance(key, str) or not key.strip():
            raise OptionError("var_map", "%s=%s: write GRAPH_VAR=CKPT_KEY, e.g. dense/kernel=w" % (name, key))
        opts.var_map[name] = key.strip()
    return opts


def parse_step(text: Union[str, int, None]) -> Optional[int]:
    """A global step as typed ("" or None: none)."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        try:
            value = int(str(text).strip(), 10)
        except ValueError:
            raise OptionError("step", "%r: a global step is a non-negative integer" % (text,)) from None
    if not 0 <= value < 2 ** 63:
        raise OptionError("step", "%r: a global step is a non-negative integer below 2**63" % (text,))
    return value


def from_text(text: "freeze_pb2.OptionText") -> freeze_pb2.FreezeOptions:
    """FreezeOptions from the options as a user typed them (PlanFreezeRequest.options):
    what every client sends, parsed here only."""
    return freeze_options(outputs=text.outputs, inputs=text.inputs, step=parse_step(text.step),
                          signature=text.signature, tags=list(text.tags), bind=list(text.bind), ema=text.ema,
                          var_map=list(text.var_map), include_variables=text.include_variables,
                          exclude_variables=text.exclude_variables, optimize=text.optimize, verify=text.verify,
                          target=text.target, format=text.format, input_shapes=list(text.input_shapes))


def to_text(outputs=(), inputs=(), step=None, signature: str = "", tags=(), bind: Pairs = None, ema: bool = False,
            var_map: Pairs = None, include_variables=(), exclude_variables=(), optimize: bool = False,
            verify: bool = False, target: Union[str, int, None] = None, format: Union[str, int, None] = None,
            input_shapes: Pairs = None) -> "freeze_pb2.OptionText":
    """The Python library's keyword options as typed text (the inverse of :func:`from_text`)."""
    def joined(value):
        return value if isinstance(value, str) else ",".join(names(value))

    def pairs(value, render):
        if value is None:
            return []
        if isinstance(value, Mapping):
            return ["%s=%s" % (k, render(v)) for k, v in value.items()]
        return [value] if isinstance(value, str) else [str(v) for v in value]

    def bound(v):
        if v is None:
            return ""
        return json.dumps(v) if isinstance(v, (bool, int, float)) else str(v)

    def dims(v):
        return v if isinstance(v, str) else ",".join(str(d) for d in v)

    if isinstance(target, int) and not isinstance(target, bool):
        target = target_name(parse_target(target))
    if isinstance(format, int) and not isinstance(format, bool):
        format = format_name(parse_format(format))
    return freeze_pb2.OptionText(
        outputs=joined(outputs), inputs=joined(inputs), step="" if step is None else str(step),
        signature=signature or "", tags=names(tags), bind=pairs(bind, bound), ema=bool(ema),
        var_map=pairs(var_map, str), include_variables=joined(include_variables),
        exclude_variables=joined(exclude_variables), optimize=bool(optimize), verify=bool(verify),
        target=target or "", format=format or "", input_shapes=pairs(input_shapes, dims))


__all__ = ["FLAGS", "OptionError", "freeze_options", "from_text", "to_text", "parse_step", "names", "bind_value",
           "parse_target", "target_name", "parse_format", "format_name", "TARGETS", "FORMATS"]
