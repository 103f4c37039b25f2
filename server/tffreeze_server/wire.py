"""The worker <-> server format: typed, length-prefixed, size-bounded frames.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON
holding one object with a string ``t`` (its type). Bytes travel as base64
strings. Nothing is ever unpickled: a frame that is too long, not JSON, not an
object, of an unknown type or with fields of the wrong type is a protocol error
(``WireError``), and the server treats the worker that sent it as crashed.

Types, server -> worker process ("zygote"):
  task   {id, kind, payload, task_dir}  plus one descriptor (the task's socket)
  kill   {id}                           stop that task's processes now
  probe  {id}                           how that task's process is doing (answered by "cpu")
  stop   {}                             exit once idle
worker process -> server:
  ready   {version}                     TensorFlow imported, tasks may come
  exited  {id, code, maxrss_kb, base_kb} a task's processes are all gone (peak and starting resident kB)
  cpu     {id, ticks, threads, state}   the task's process: CPU ticks used, threads, state letter (a probe's answer)
task process -> server (on the task's own socket):
  progress {stage, message, fraction}   stage: a string or a Stage number
  ok       {value}                      the task's JSON result
  error    {code, message, reason, metadata}
"""

from __future__ import annotations

import base64
import json
import re
import socket
import struct
from typing import Any, Dict, List, Optional, Tuple

MAX_FRAME = 64 << 20  # bytes of one frame's JSON; the largest is a result with its recipe
MAX_TEXT = 4096  # a progress or error message, a reason, one metadata value
MAX_METADATA = 32
_HEADER = struct.Struct(">I")
_REASON = re.compile(r"^ERROR_REASON_[A-Z0-9_]{1,60}$")
_CODES = ("INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED",
          "CANCELLED", "UNAVAILABLE", "DATA_LOSS", "INTERNAL")


class WireError(ValueError):
    """A frame that breaks the format: the peer is treated as crashed."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise WireError("%s is not a base64 string" % what)
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise WireError("%s is not valid base64" % what) from None


def encode(message: Dict[str, Any]) -> bytes:
    data = json.dumps(message, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode("ascii")
    if len(data) > MAX_FRAME:
        raise WireError("a %r frame of %d bytes is over the %d-byte limit" % (message.get("t"), len(data), MAX_FRAME))
    return _HEADER.pack(len(data)) + data


def decode(data: bytes) -> Dict[str, Any]:
    try:
        message = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError("a frame is not JSON: %s" % str(exc)[:200]) from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise WireError("a frame is not an object with a type")
    return message


def _no_constant(name: str):
    raise ValueError("%s is not allowed" % name)


def send(sock: socket.socket, message: Dict[str, Any], fds: List[int] = ()) -> None:
    data = encode(message)
    if fds:
        sent = socket.send_fds(sock, [data], list(fds))
        data = data[sent:]
    if data:
        sock.sendall(data)


class Reader:
    """Frames from a stream socket, read as they arrive (``poll``) or blocking (``read``),
    with any descriptors sent beside them."""

    def __init__(self, sock: socket.socket, max_frame: int = MAX_FRAME):
        self.sock = sock
        self.max_frame = max_frame
        self.buffer = bytearray()
        self.fds: List[int] = []
        self.eof = False

    def _fill(self) -> bool:
        """One recv; False at end of stream."""
        data, fds, _, _ = socket.recv_fds(self.sock, 1 << 20, 4)
        self.fds.extend(fds)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def _frame(self) -> Optional[Dict[str, Any]]:
        if len(self.buffer) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(self.buffer)
        if length > self.max_frame:
            raise WireError("a frame declares %d bytes, over the %d-byte limit" % (length, self.max_frame))
        if len(self.buffer) < _HEADER.size + length:
            return None
        data = bytes(self.buffer[_HEADER.size:_HEADER.size + length])
        del self.buffer[:_HEADER.size + length]
        return decode(data)

    def read(self) -> Optional[Dict[str, Any]]:
        """The next frame, blocking; None at end of stream."""
        while True:
            frame = self._frame()
            if frame is not None:
                return frame
            if self.eof or not self._fill():
                if self.buffer:
                    raise WireError("the stream ended inside a frame")
                return None

    def take_fds(self) -> List[int]:
        fds, self.fds = self.fds, []
        return fds

    def frames_ready(self) -> List[Dict[str, Any]]:
        """Every complete frame after one recv (call when the socket is readable)."""
        if not self.eof:
            self._fill()
        out = []
        while True:
            frame = self._frame()
            if frame is None:
                break
            out.append(frame)
        if self.eof and self.buffer and not out:
            raise WireError("the stream ended inside a frame")
        return out


# -- the schema ----------------------------------------------------------------
def _text(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise WireError("%s is not a string" % what)
    return value[:limit]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError("%s is not a number" % what)
    return value


def check_task_frame(frame: Dict[str, Any]) -> Tuple:
    """A task process's frame as ("progress", stage, message, fraction), ("ok", value)
    or ("error", code, message, reason, metadata); anything else is a WireError."""
    kind = frame["t"]
    if kind == "progress":
        stage = frame.get("stage")
        if not isinstance(stage, (str, int)) or isinstance(stage, bool):
            raise WireError("progress.stage is not a string or number")
        if isinstance(stage, str):
            stage = stage[:64]
        fraction = float(_number(frame.get("fraction"), "progress.fraction"))
        return ("progress", stage, _text(frame.get("message"), "progress.message"), min(1.0, max(0.0, fraction)))
    if kind == "plan":
        return ("progress", "plan", check_pieces(frame.get("pieces"), ("file", "data")), 0.0)
    if kind == "ok":
        if "value" not in frame:
            raise WireError("ok has no value")
        return ("ok", frame["value"])
    if kind == "error":
        code = frame.get("code")
        if code not in _CODES:
            raise WireError("error.code %r is not a status" % (str(code)[:40],))
        reason = _text(frame.get("reason"), "error.reason", 80)
        if not _REASON.match(reason):
            raise WireError("error.reason %r is not an ErrorReason name" % reason[:80])
        metadata = frame.get("metadata")
        if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA:
            raise WireError("error.metadata is not an object of at most %d entries" % MAX_METADATA)
        clean = {_text(k, "metadata key", 64): _text(v, "metadata value", 1024) for k, v in metadata.items()}
        return ("error", code, _text(frame.get("message"), "error.message", 8192), reason, clean)
    raise WireError("unknown task frame type %r" % kind[:40])


MAX_PIECES = 1 << 20


def check_pieces(pieces: Any, kinds: Tuple[str, ...]) -> List[tuple]:
    """Assembly-recipe pieces: ("file", path, offset, length), ("graph", offset, length)
    or ("data", bytes), each field of its type, offsets and lengths not negative."""
    if not isinstance(pieces, list) or len(pieces) > MAX_PIECES:
        raise WireError("recipe pieces are not a list of at most %d" % MAX_PIECES)
    out = []
    for p in pieces:
        if not isinstance(p, list) or not p or p[0] not in kinds:
            raise WireError("a recipe piece is not one of %s" % ", ".join(kinds))
        if p[0] == "data" and len(p) == 2:
            out.append(("data", unb64(p[1], "a data piece")))
            continue
        fields = p[1:]
        if p[0] == "file" and len(fields) == 3 and isinstance(fields[0], str) and len(fields[0]) <= 4096:
            numbers = fields[1:]
        elif p[0] == "graph" and len(fields) == 2:
            numbers = fields
        else:
            raise WireError("a %s piece has the wrong fields" % p[0])
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 1 << 62 for n in numbers):
            raise WireError("a %s piece's offset or length is not a non-negative integer" % p[0])
        out.append(tuple(p))
    return out


def check_worker_frame(frame: Dict[str, Any]) -> Tuple:
    """A worker process's frame as ("ready",), ("exited", id, code, maxrss_kb, base_kb) or
    ("cpu", id, ticks, threads, state)."""
    kind = frame["t"]
    if kind == "ready":
        return ("ready",)
    if kind == "exited":
        code = frame.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            raise WireError("exited.code is not an integer")
        return ("exited", _text(frame.get("id"), "exited.id", 64), code,
                int(_number(frame.get("maxrss_kb", 0), "exited.maxrss_kb")),
                int(_number(frame.get("base_kb", 0), "exited.base_kb")))
    if kind == "cpu":
        return ("cpu", _text(frame.get("id"), "cpu.id", 64), int(_number(frame.get("ticks", 0), "cpu.ticks")),
                int(_number(frame.get("threads", 0), "cpu.threads")), _text(frame.get("state", ""), "cpu.state", 4))
    raise WireError("unknown worker frame type %r" % kind[:40])


__all__ = ["WireError", "Reader", "send", "encode", "decode", "b64", "unb64", "check_task_frame", "check_pieces",
           "check_worker_frame", "MAX_FRAME"]
