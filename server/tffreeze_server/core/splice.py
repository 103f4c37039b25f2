"""Splice, don't convert: a frozen Const's ``tensor_content`` is, byte for byte, the
little-endian data a Saver checkpoint stores for a numeric tensor. So large
values never pass through numpy or a TensorProto: the checkpoint's ``.index``
(an SSTable of BundleEntryProto) gives each tensor's shard, offset, size and
crc32c; the frozen GraphDef is written as a stream — protobuf framing around byte
ranges copied from the data shard in chunks, each tensor's crc32c checked on the
way, sha256 computed as it goes. The bytes are identical to
``GraphDef.SerializeToString(deterministic=True)`` of the materialised graph
(tested), and the worker's memory stays flat as checkpoints grow.

Values the engine must look at (``--optimize``, ``--verify``, the TF 1.15 target)
are materialised into the graph first (``materialize``).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterator, Optional, Tuple

from tffreeze_api.fileio import write_all

from .digest import BackgroundSha256
from .errors import DataLoss

_MAGIC = 0xDB4775248B80FB57
_CHUNK = 4 << 20
_MASK_DELTA = 0xA282EAD8


@dataclass(frozen=True)
class Entry:
    dtype: int
    shape: Tuple[int, ...]
    shard: str  # the data file's path
    offset: int
    size: int
    crc32c: int  # masked, as TensorFlow stores it
    sliced: bool


@dataclass(frozen=True)
class Splice:
    """A Const whose tensor_content comes from a checkpoint data file."""

    variable: str
    key: str
    entry: Entry


def _varint(b: bytes, i: int) -> Tuple[int, int]:
    result = shift = 0
    while True:
        c = b[i]
        i += 1
        result |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return result, i


def _block(data: bytes, offset: int, size: int) -> Optional[bytes]:
    if offset + size + 5 > len(data) or data[offset + size] != 0:  # 0: stored uncompressed
        return None
    return data[offset:offset + size]


def _entries(block: bytes) -> Iterator[Tuple[bytes, bytes]]:
    restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * restarts
    i, key = 0, b""
    while i < end:
        shared, i = _varint(block, i)
        fresh, i = _varint(block, i)
        length, i = _varint(block, i)
        key = key[:shared] + block[i:i + fresh]
        i += fresh
        yield key, block[i:i + length]
        i += length


def read_index(prefix_path: str) -> Optional[Dict[str, Entry]]:
    """Every tensor's entry in ``PREFIX.index``; None when the index is not in the
    layout this reader knows (compressed blocks, an unexpected footer): the caller
    then reads values with TensorFlow's reader as before."""
    from tensorflow.core.protobuf import tensor_bundle_pb2

    try:
        with open(prefix_path + ".index", "rb") as fh:
            data = fh.read()
        footer = data[-48:]
        if len(footer) < 48 or struct.unpack("<Q", footer[-8:])[0] != _MAGIC:
            return None
        i = 0
        _, i = _varint(footer, i)
        _, i = _varint(footer, i)
        index_offset, i = _varint(footer, i)
        index_size, i = _varint(footer, i)
        index = _block(data, index_offset, index_size)
        if index is None:
            return None
        shards = 1
        out: Dict[str, Entry] = {}
        for _, handle in _entries(index):
            offset, j = _varint(handle, 0)
            size, _ = _varint(handle, j)
            block = _block(data, offset, size)
            if block is None:
                return None
            for key, value in _entries(block):
                if key == b"":
                    shards = tensor_bundle_pb2.BundleHeaderProto.FromString(value).num_shards or 1
                    continue
                e = tensor_bundle_pb2.BundleEntryProto.FromString(value)
                out[key.decode("utf-8", "surrogateescape")] = Entry(
                    e.dtype, tuple(int(d.size) for d in e.shape.dim), "%d" % e.shard_id, e.offset, e.size,
                    e.crc32c, bool(e.slices))
        return {k: Entry(e.dtype, e.shape, "%s.data-%05d-of-%05d" % (prefix_path, int(e.shard), shards), e.offset,
                         e.size, e.crc32c, e.sliced) for k, e in out.items()}
    except (OSError, IndexError, ValueError, struct.error):
        return None
    except Exception:  # noqa: BLE001 - a protobuf DecodeError: not a layout we read
        return None


def content_dtype(dtype_enum: int) -> bool:
    """Whether TensorFlow writes values of this dtype as raw tensor_content (make_tensor_proto)."""
    from tensorflow.python.framework import dtypes, tensor_util

    try:
        return dtypes.as_dtype(dtype_enum) in tensor_util._TENSOR_CONTENT_TYPES  # pylint: disable=protected-access
    except TypeError:
        return False


def spliceable(entry: Entry, dtype_enum: int, shape) -> bool:
    """A whole (unsliced) numeric tensor whose stored bytes are its tensor_content."""
    from tensorflow.python.framework import dtypes

    if entry.sliced or entry.dtype != dtype_enum or not content_dtype(entry.dtype):
        return False
    dt = dtypes.as_dtype(entry.dtype)
    count = 1
    for d in entry.shape:
        count *= d
    return entry.size == count * dt.size and (shape is None or tuple(shape) == entry.shape)


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def _stream(s: Splice) -> Iterator[bytes]:
    """The tensor's stored bytes in chunks, crc32c-checked (DATA_LOSS on mismatch)."""
    import google_crc32c

    crc = google_crc32c.Checksum()
    left = s.entry.size
    with open(s.entry.shard, "rb") as fh:
        fh.seek(s.entry.offset)
        while left:
            chunk = fh.read(min(_CHUNK, left))
            if not chunk:
                break
            crc.update(chunk)
            left -= len(chunk)
            yield chunk
    if left or _mask(int.from_bytes(crc.digest(), "big")) != s.entry.crc32c:
        raise DataLoss("the stored bytes of variable %s (checkpoint key %r) do not match the checksum its index "
                       "records (crc32c)%s: the data shard was damaged after TensorFlow wrote it. Re-upload the "
                       ".data-* files from the training machine."
                       % (s.variable, s.key, ", and end early" if left else ""), "ERROR_REASON_CHECKPOINT_CORRUPT",
                       variable=s.variable, key=s.key[:200])


def materialize(graph_def, splices: Dict[str, Splice]) -> None:
    """Fill every spliced Const's tensor_content (for steps that read values)."""
    for node in graph_def.node:
        s = splices.get(node.name)
        if s is not None:
            node.attr["value"].tensor.tensor_content = b"".join(_stream(s))
    splices.clear()


# -- protobuf framing ---------------------------------------------------------------
def _uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(number: int, length: int) -> bytes:
    return _uvarint((number << 3) | 2) + _uvarint(length)


def _node_parts(node, s: Splice) -> Tuple[bytes, bytes]:
    """(bytes before the content, bytes after it) of one spliced NodeDef,
    framed as the top-level GraphDef.node field; equal to deterministic serialization
    of the node with its content filled in."""
    from tensorflow.core.framework import node_def_pb2, tensor_pb2

    keys = sorted(node.attr)
    if keys[-1] != "value":
        raise ValueError("Const %s has an attribute after 'value'" % node.name)
    head = node_def_pb2.NodeDef()
    head.CopyFrom(node)
    del head.attr["value"]
    tail = node_def_pb2.NodeDef()
    for field in ("experimental_debug_info", "experimental_type"):
        if head.HasField(field):
            getattr(tail, field).CopyFrom(getattr(head, field))
            head.ClearField(field)
    tensor = tensor_pb2.TensorProto()
    tensor.CopyFrom(node.attr["value"].tensor)
    tensor.ClearField("tensor_content")
    tensor_bytes = tensor.SerializeToString(deterministic=True)
    n = s.entry.size
    if n:
        tensor_prefix = tensor_bytes + _len_field(4, n)
    else:
        tensor_prefix = tensor_bytes
    tensor_len = len(tensor_prefix) + n
    attr_prefix = _len_field(8, tensor_len) + tensor_prefix  # AttrValue.tensor is field 8
    attr_len = len(attr_prefix) + n
    key = b"value"
    entry_prefix = _len_field(1, len(key)) + key + _len_field(2, attr_len) + attr_prefix
    entry_len = len(entry_prefix) + n
    head_bytes = head.SerializeToString(deterministic=True)
    tail_bytes = tail.SerializeToString(deterministic=True)
    node_prefix = head_bytes + _len_field(5, entry_len) + entry_prefix
    node_len = len(node_prefix) + n + len(tail_bytes)
    return _len_field(1, node_len) + node_prefix, tail_bytes


MAX_PLAN_LITERAL = 2 << 20  # an early recipe's literal bytes, at most (it is one gRPC message)


def _parts(graph_def, splices: Dict[str, Splice]) -> list:
    """The output in order: bytes, or the Splice whose stored bytes go there. Nodes in
    their order, then the GraphDef's other fields, as deterministic serialization does."""
    from tensorflow.core.framework import graph_pb2

    parts: list = []
    for node in graph_def.node:
        s = splices.get(node.name)
        if s is None:
            b = node.SerializeToString(deterministic=True)
            parts.append(_len_field(1, len(b)) + b)
            continue
        before, after = _node_parts(node, s)
        parts += [before, s, after]
    rest = graph_pb2.GraphDef()
    rest.CopyFrom(graph_def)  # cheap: spliced contents are empty here
    del rest.node[:]
    parts.append(rest.SerializeToString(deterministic=True))
    return parts


def _plan(parts: list, root: str) -> Optional[list]:
    """The output as ("data", bytes) and ("file", path, offset, length) pieces, known
    before a byte of the data file is read; None when the literal bytes are too many."""
    plan: list = []
    pending: list = []  # literal parts not yet joined into a piece
    literal = 0
    for part in parts:
        if isinstance(part, Splice):
            if part.entry.size:
                if pending:
                    plan.append(("data", b"".join(pending)))
                    pending = []
                plan.append(("file", os.path.relpath(part.entry.shard, root).replace(os.sep, "/"),
                             part.entry.offset, part.entry.size))
            continue
        literal += len(part)
        if literal > MAX_PLAN_LITERAL:
            return None
        if part:
            pending.append(part)
    if pending:
        plan.append(("data", b"".join(pending)))
    return plan


def write_graph(graph_def, splices: Dict[str, Splice], out: BinaryIO, pieces: Optional[list] = None,
                root: str = "", on_plan: Optional[Callable[[list], None]] = None) -> Tuple[str, int]:
    """Write ``graph_def`` with its spliced Consts' contents streamed from the data
    files; returns (sha256, size). With ``pieces``, also records how the output is
    made: ("graph", offset, length) for bytes written here and ("file", path relative
    to ``root``, offset, length) for spliced bytes (the assembly recipe a client can
    follow). ``on_plan``: called before writing with the same output as literal and
    file pieces (see ``_plan``; not called when the literal bytes are over 2 MiB)."""
    h = BackgroundSha256()  # hashing overlaps the reads, crc32c checks and writes
    size = 0

    def emit(b: bytes, spliced: Optional[Splice] = None, at: int = 0) -> None:
        nonlocal size
        if not b:
            return
        if pieces is not None:
            if spliced is not None:
                path = os.path.relpath(spliced.entry.shard, root).replace(os.sep, "/")
                last = pieces[-1] if pieces else None
                if last and last[0] == "file" and last[1] == path and last[2] + last[3] == at:
                    pieces[-1] = ("file", path, last[2], last[3] + len(b))
                else:
                    pieces.append(("file", path, at, len(b)))
            elif pieces and pieces[-1][0] == "graph":
                pieces[-1] = ("graph", pieces[-1][1], pieces[-1][2] + len(b))
            else:
                pieces.append(("graph", size, len(b)))
        write_all(out, b)
        h.update(b)
        size += len(b)

    try:
        parts = _parts(graph_def, splices)
        if on_plan is not None:
            plan = _plan(parts, root)
            if plan is not None:
                on_plan(plan)
        for part in parts:
            if isinstance(part, Splice):
                at = part.entry.offset
                for chunk in _stream(part):
                    emit(chunk, part, at)
                    at += len(chunk)
            else:
                emit(part)
        return h.hexdigest(), size
    finally:
        h.close()


def planned_size(graph_def, splices: Dict[str, Splice]) -> int:
    """The written size, known before writing (for the protobuf limit)."""
    return graph_def.ByteSize() + sum(s.entry.size + 10 for s in splices.values())


__all__ = ["Entry", "Splice", "read_index", "content_dtype", "spliceable", "materialize", "write_graph", "planned_size"]
