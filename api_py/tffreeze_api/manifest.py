"""The manifest: a FreezeResult as the JSON text clients write beside a frozen graph.

The manifest *is* the proto3 JSON mapping of ``tffreeze.v1.FreezeResult``,
printed with fixed choices so that users' scripts see stable keys (freeze.proto
states them). The server prints it and sends the bytes (FreezeResponse.manifest);
every client writes them as they are:

- field names as declared (snake_case), every field, in declaration order;
- an unset message or ``optional`` field is ``null`` (so an unknown rank is a
  ``null`` shape and a missing step a ``null`` step);
- enums by name; 64-bit integers as JSON numbers; integral numbers inside
  ``google.protobuf.Value``/``ListValue`` as integers (shapes read ``[-1, 4]``);
  other doubles in their shortest round-trip form (Python's ``repr``);
- map entries sorted by key; two-space indentation; ASCII-only; one newline.

Every such text parses back with any proto3 JSON parser (:func:`parse`).
The same printer serves InspectResponse (``tffreeze inspect --json``).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any, Dict, Optional

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from .v1 import freeze_pb2

_INTS = {FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
         FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
         FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
         FieldDescriptor.TYPE_SFIXED64}
_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}
_VALUE = "google.protobuf.Value"
_LIST = "google.protobuf.ListValue"
_STRUCT = "google.protobuf.Struct"
# Fields that carry a rendering of their own message (InspectResponse.rendered): never printed.
_RENDERINGS = {"tffreeze.v1.Rendered"}


def _fields(desc: Descriptor):
    return [f for f in desc.fields if f.message_type is None or f.message_type.full_name not in _RENDERINGS]


def _number(value: float, integral_as_int: bool):
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if integral_as_int and value.is_integer() and abs(value) < 2 ** 53:
        return int(value)
    return float(value)


def _well_known(msg) -> Any:
    name = msg.DESCRIPTOR.full_name
    if name == _VALUE:
        kind = msg.WhichOneof("kind")
        if kind in (None, "null_value"):
            return None
        if kind == "number_value":
            return _number(msg.number_value, True)
        if kind == "list_value":
            return _well_known(msg.list_value)
        if kind == "struct_value":
            return _well_known(msg.struct_value)
        return getattr(msg, kind)
    if name == _LIST:
        return [_well_known(v) for v in msg.values]
    return {k: _well_known(msg.fields[k]) for k in sorted(msg.fields)}  # Struct


def _scalar(field: FieldDescriptor, value) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        enum_value = field.enum_type.values_by_number.get(value)
        return enum_value.name if enum_value is not None else value
    if field.type in _INTS:
        return int(value)
    if field.type in _FLOATS:
        return _number(value, False)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return base64.b64encode(value).decode("ascii")
    return value


def _value(field: FieldDescriptor, value) -> Any:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return to_dict(value)
    return _scalar(field, value)


def to_dict(msg) -> Any:
    """The JSON value (dicts in field order) of any message, by the rules above."""
    desc: Descriptor = msg.DESCRIPTOR
    if desc.full_name in (_VALUE, _LIST, _STRUCT):
        return _well_known(msg)
    out: Dict[str, Any] = {}
    for field in _fields(desc):
        value = getattr(msg, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            out[field.name] = {str(k): _value(value_field, value[k]) for k in sorted(value)}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        elif field.has_presence and not msg.HasField(field.name):
            out[field.name] = None
        else:
            out[field.name] = _value(field, value)
    return out


def to_json(msg) -> str:
    """The manifest text of a FreezeResult (or any message): JSON plus a newline."""
    return json.dumps(to_dict(msg), indent=2, ensure_ascii=True, allow_nan=False) + "\n"


def parse(text: str, message=None):
    """Read a manifest (or any proto3 JSON) back into a FreezeResult (or ``message``)."""
    from google.protobuf import json_format  # only here: importing it costs a CLI start ~20 ms

    return json_format.Parse(text, message if message is not None else freeze_pb2.FreezeResult())


def load(path: str) -> freeze_pb2.FreezeResult:
    with open(path, "r", encoding="utf-8") as fh:
        return parse(fh.read())


# -- JSON schema --------------------------------------------------------------------
def _type_schema(field: FieldDescriptor, defs: Dict[str, Any]) -> Dict[str, Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        name = field.message_type.full_name
        if name == _VALUE:
            return {}
        if name == _LIST:
            return {"type": "array"}
        if name == _STRUCT:
            return {"type": "object"}
        _message_schema(field.message_type, defs)
        return {"$ref": "#/$defs/%s" % name}
    if field.type == FieldDescriptor.TYPE_ENUM:
        return {"enum": [v.name for v in field.enum_type.values]}
    if field.type in _INTS:
        return {"type": "integer"}
    if field.type in _FLOATS:
        return {"type": ["number", "string"]}
    if field.type == FieldDescriptor.TYPE_BOOL:
        return {"type": "boolean"}
    return {"type": "string"}


def _message_schema(desc: Descriptor, defs: Dict[str, Any]) -> None:
    if desc.full_name in defs:
        return
    defs[desc.full_name] = {}  # placeholder against recursion
    props: Dict[str, Any] = {}
    for field in _fields(desc):
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            props[field.name] = {"type": "object", "additionalProperties": _type_schema(
                field.message_type.fields_by_name["value"], defs)}
        elif field.is_repeated:
            props[field.name] = {"type": "array", "items": _type_schema(field, defs)}
        elif field.has_presence:
            inner = _type_schema(field, defs)
            props[field.name] = {"anyOf": [inner, {"type": "null"}]} if inner else {}
        else:
            props[field.name] = _type_schema(field, defs)
    defs[desc.full_name] = {"type": "object", "properties": props, "required": [f.name for f in _fields(desc)],
                            "additionalProperties": False}


def json_schema(desc: Optional[Descriptor] = None) -> Dict[str, Any]:
    """A JSON Schema (2020-12) of the manifest (or of ``desc``'s JSON), derived from the proto."""
    desc = desc or freeze_pb2.FreezeResult.DESCRIPTOR
    defs: Dict[str, Any] = {}
    _message_schema(desc, defs)
    root = defs.pop(desc.full_name)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": desc.full_name, **root,
            "$defs": defs}


__all__ = ["to_dict", "to_json", "parse", "load", "json_schema"]
