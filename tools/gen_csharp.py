"""Generate the C# messages of the tffreeze contract from protos/ (run by `make csharp`).

This platform has no NuGet (no Google.Protobuf, no protoc C# plugin), so the C#
client's messages are generated here from the same descriptors protoc produced
for Python: tffreeze.v1 plus the well-known types it uses (google.protobuf
Struct/Value/ListValue, Any) and google.rpc Status/ErrorInfo for error details.
Each message gets proto3 binary encoding (WriteTo/Read, over the hand-written
runtime in client_csharp/src/ProtoRuntime.cs). No JSON: the server renders the
manifest and the inspect report, and the client writes those bytes.

    python tools/gen_csharp.py OUT.cs
"""

from __future__ import annotations

import re
import sys
from typing import List

from google.protobuf import any_pb2, struct_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.rpc import error_details_pb2, status_pb2

from tffreeze_api.v1 import blob_pb2, errors_pb2, freeze_pb2, service_pb2

F = FieldDescriptor
NAMESPACES = {"tffreeze.v1": "TfFreeze.V1", "google.protobuf": "Google.Protobuf.WellKnownTypes",
              "google.rpc": "Google.Rpc"}
MESSAGES = [
    (struct_pb2, ["Struct", "Value", "ListValue"], ["NullValue"]),
    (any_pb2, ["Any"], []),
    (status_pb2, ["Status"], []),
    (error_details_pb2, ["ErrorInfo"], []),
    (blob_pb2, None, None),
    (errors_pb2, None, None),
    (freeze_pb2, None, None),
    (service_pb2, None, None),
]


def pascal(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[_.]", name) if p)


def cs_type_name(desc) -> str:
    """Fully qualified C# name of a message or enum descriptor."""
    return "global::%s.%s" % (NAMESPACES[desc.file.package], desc.name)


def is_map(field) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def scalar_cs(field) -> str:
    t = field.type
    if t == F.TYPE_ENUM:
        return cs_type_name(field.enum_type)
    return {F.TYPE_STRING: "string", F.TYPE_BYTES: "byte[]", F.TYPE_BOOL: "bool", F.TYPE_DOUBLE: "double",
            F.TYPE_FLOAT: "float", F.TYPE_INT32: "int", F.TYPE_INT64: "long", F.TYPE_UINT32: "uint",
            F.TYPE_UINT64: "ulong"}[t]


def field_cs(field) -> str:
    if field.type == F.TYPE_MESSAGE:
        return cs_type_name(field.message_type)
    return scalar_cs(field)


def default_cs(field) -> str:
    t = field.type
    if t == F.TYPE_STRING:
        return '""'
    if t == F.TYPE_BYTES:
        return "new byte[0]"
    if t == F.TYPE_BOOL:
        return "false"
    if t == F.TYPE_ENUM:
        return "(%s)0" % cs_type_name(field.enum_type)
    return "0"


def nullable_scalar(field) -> bool:
    """Scalars with presence (proto3 optional, oneof members) are nullable in C#."""
    return field.type != F.TYPE_MESSAGE and field.has_presence


def prop_name(field, msg: Descriptor) -> str:
    name = pascal(field.name)
    return name + "_" if name == msg.name else name


def write_stmt(field, expr: str, present: bool) -> str:
    """Statement writing one value (``expr``) of a singular or repeated element."""
    n, t = field.number, field.type
    if t == F.TYPE_MESSAGE:
        return "w.Message(%d, %s);" % (n, expr)
    kind = {F.TYPE_STRING: "String", F.TYPE_BYTES: "Bytes", F.TYPE_BOOL: "Bool", F.TYPE_DOUBLE: "Double",
            F.TYPE_FLOAT: "Float", F.TYPE_INT32: "Int64", F.TYPE_INT64: "Int64", F.TYPE_ENUM: "Int64",
            F.TYPE_UINT32: "UInt64", F.TYPE_UINT64: "UInt64"}[t]
    cast = "(long)" if t == F.TYPE_ENUM else ""
    return "w.%s(%d, %s%s, %s);" % (kind, n, cast, expr, "true" if present else "false")


def read_expr(field) -> str:
    t = field.type
    if t == F.TYPE_MESSAGE:
        return "r.Message<%s>()" % cs_type_name(field.message_type)
    if t == F.TYPE_ENUM:
        return "(%s)r.Int64()" % cs_type_name(field.enum_type)
    return {F.TYPE_STRING: "r.String()", F.TYPE_BYTES: "r.Bytes()", F.TYPE_BOOL: "r.Bool()",
            F.TYPE_DOUBLE: "r.Double()", F.TYPE_FLOAT: "r.Float()", F.TYPE_INT32: "(int)r.Int64()",
            F.TYPE_INT64: "r.Int64()", F.TYPE_UINT32: "(uint)r.Varint()", F.TYPE_UINT64: "r.Varint()"}[t]


_VARINTS = (F.TYPE_INT32, F.TYPE_INT64, F.TYPE_UINT32, F.TYPE_UINT64, F.TYPE_BOOL, F.TYPE_ENUM)


def gen_enum(enum: EnumDescriptor, out: List[str]) -> None:
    out.append("    public enum %s" % enum.name)
    out.append("    {")
    for v in enum.values:
        out.append("        %s = %d," % (v.name, v.number))
    out.append("    }")
    out.append("")


def gen_message(msg: Descriptor, out: List[str]) -> None:
    out.append("    public sealed partial class %s : global::TfFreeze.Protobuf.ProtoMessage" % msg.name)
    out.append("    {")
    for f in msg.fields:
        name = prop_name(f, msg)
        if is_map(f):
            key, val = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            if key.type != F.TYPE_STRING:
                raise NotImplementedError("maps with non-string keys (%s) are not generated yet" % f.full_name)
            out.append("        public readonly global::TfFreeze.Protobuf.ProtoMap<%s> %s = "
                       "new global::TfFreeze.Protobuf.ProtoMap<%s>();" % (field_cs(val), name, field_cs(val)))
        elif f.is_repeated:
            out.append("        public readonly System.Collections.Generic.List<%s> %s = "
                       "new System.Collections.Generic.List<%s>();" % (field_cs(f), name, field_cs(f)))
        elif f.type == F.TYPE_MESSAGE:
            out.append("        public %s %s;" % (field_cs(f), name))
        elif nullable_scalar(f):
            out.append("        public %s%s %s;" % (field_cs(f), "" if f.type in (F.TYPE_STRING, F.TYPE_BYTES) else "?",
                                                   name))
        else:
            out.append("        public %s %s = %s;" % (field_cs(f), name, default_cs(f)))
    # binary encoding, fields in number order
    out.append("        public override void WriteTo(global::TfFreeze.Protobuf.ProtoWriter w)")
    out.append("        {")
    for f in sorted(msg.fields, key=lambda f: f.number):
        name = prop_name(f, msg)
        if is_map(f):
            key, val = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            out.append("            foreach (var e in %s)" % name)
            out.append("            {")
            out.append("                var entry = new global::TfFreeze.Protobuf.ProtoWriter();")
            out.append("                " + write_stmt(key, "e.Key", True).replace("w.", "entry.", 1))
            out.append("                " + write_stmt(val, "e.Value", True).replace("w.", "entry.", 1))
            out.append("                w.Bytes(%d, entry.ToArray(), true);" % f.number)
            out.append("            }")
        elif f.is_repeated and f.type in _VARINTS:  # packed, as proto3 writes repeated scalars
            out.append("            if (%s.Count > 0)" % name)
            out.append("            {")
            out.append("                var packed = new global::TfFreeze.Protobuf.ProtoWriter();")
            value = {F.TYPE_BOOL: "v ? 1UL : 0UL", F.TYPE_ENUM: "(ulong)(long)v"}.get(f.type, "(ulong)v")
            out.append("                foreach (var v in %s) packed.Varint(%s);" % (name, value))
            out.append("                w.Bytes(%d, packed.ToArray(), true);" % f.number)
            out.append("            }")
        elif f.is_repeated:
            if f.type not in (F.TYPE_STRING, F.TYPE_BYTES, F.TYPE_MESSAGE):
                raise NotImplementedError("packed repeated fixed-width scalars (%s) are not generated yet"
                                          % f.full_name)
            out.append("            foreach (var v in %s) %s" % (name, write_stmt(f, "v", True)))
        elif f.type == F.TYPE_MESSAGE:
            out.append("            if (%s != null) %s" % (name, write_stmt(f, name, True)))
        elif nullable_scalar(f):
            value = name if f.type in (F.TYPE_STRING, F.TYPE_BYTES) else name + ".Value"
            out.append("            if (%s != null) %s" % (name, write_stmt(f, value, True)))
        else:
            out.append("            " + write_stmt(f, name, False))
    out.append("        }")
    # binary decoding
    out.append("        protected override bool Read(global::TfFreeze.Protobuf.ProtoReader r)")
    out.append("        {")
    if not msg.fields:  # a message without fields (a request without parameters)
        out.append("            return false;")
        out.append("        }")
        out.append("    }")
        out.append("")
        return
    out.append("            switch (r.Field)")
    out.append("            {")
    for f in msg.fields:
        name = prop_name(f, msg)
        if is_map(f):
            key, val = f.message_type.fields_by_name["key"], f.message_type.fields_by_name["value"]
            out.append("                case %d:" % f.number)
            out.append("                {")
            out.append("                    var e = r.Sub(); %s k = %s; %s v = %s;" % (
                field_cs(key), default_cs(key), field_cs(val),
                "null" if val.type == F.TYPE_MESSAGE else default_cs(val)))
            out.append("                    while (e.More) { e.Next(); if (e.Field == 1) k = %s; else if (e.Field == 2) "
                       "v = %s; else e.Skip(); }" % (read_expr(key).replace("r.", "e."),
                                                     read_expr(val).replace("r.", "e.")))
            if val.type == F.TYPE_MESSAGE:
                out.append("                    %s[k] = v ?? new %s(); return true;" % (name, field_cs(val)))
            else:
                out.append("                    %s[k] = v; return true;" % name)
            out.append("                }")
        elif f.is_repeated and f.type in _VARINTS:  # packed (wire type 2) or one at a time (0)
            out.append("                case %d:" % f.number)
            out.append("                    if (r.Wire == 2) { var p = r.Sub(); while (p.More) %s.Add(%s); }" % (
                name, read_expr(f).replace("r.", "p.")))
            out.append("                    else %s.Add(%s);" % (name, read_expr(f)))
            out.append("                    return true;")
        elif f.is_repeated:
            out.append("                case %d: %s.Add(%s); return true;" % (f.number, name, read_expr(f)))
        else:
            out.append("                case %d: %s = %s; return true;" % (f.number, name, read_expr(f)))
    out.append("            }")
    out.append("            return false;")
    out.append("        }")
    out.append("    }")
    out.append("")


def generate() -> str:
    by_ns = {}
    for module, messages, enums in MESSAGES:
        fd = module.DESCRIPTOR
        ns = NAMESPACES[fd.package]
        chunk = by_ns.setdefault(ns, [])
        for name in (enums if enums is not None else list(fd.enum_types_by_name)):
            gen_enum(fd.enum_types_by_name[name], chunk)
        for name in (messages if messages is not None else list(fd.message_types_by_name)):
            gen_message(fd.message_types_by_name[name], chunk)
    out = ["// <auto-generated> by tools/gen_csharp.py from protos/ (and the well-known and google.rpc",
           "// types it uses). Do not edit; `make csharp` regenerates it. </auto-generated>", ""]
    for ns, lines in by_ns.items():
        out.append("namespace %s" % ns)
        out.append("{")
        out.extend(lines)
        out.append("}")
        out.append("")
    return "\n".join(out)


def main(argv: List[str]) -> int:
    if len(argv) != 1:
        print("usage: gen_csharp.py OUT.cs", file=sys.stderr)
        return 2
    text = generate()
    with open(argv[0], "w") as fh:
        fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
