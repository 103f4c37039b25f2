"""A minimal gRPC-Web client over urllib (HTTP/1.1), as a C# client speaks it:
frames of 1 flag byte + 4-byte big-endian length + message; a trailer frame
(flag 0x80) carries grpc-status, grpc-message and grpc-status-details-bin."""

from __future__ import annotations

import base64
import struct
import urllib.parse
import urllib.request
from typing import List, Tuple


class WebError(Exception):
    def __init__(self, status: int, message: str, reason: str = "", metadata=None):
        super().__init__("%d: %s" % (status, message))
        self.status = status
        self.message = message
        self.reason = reason
        self.metadata = metadata or {}


def call(base_url: str, method: str, request_bytes: bytes, timeout: float = 120) -> List[bytes]:
    """POST one request to /tffreeze.v1.FreezeService/METHOD; the response messages."""
    body = struct.pack(">BI", 0, len(request_bytes)) + request_bytes
    req = urllib.request.Request("%s/tffreeze.v1.FreezeService/%s" % (base_url, method), data=body, method="POST",
                                 headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data = resp.read()
        header_status = resp.headers.get("grpc-status")
    messages, trailers = parse_frames(data)
    status = int(trailers.get("grpc-status", header_status or 0))
    if status != 0:
        reason, metadata = _error_info(trailers.get("grpc-status-details-bin"))
        raise WebError(status, urllib.parse.unquote(trailers.get("grpc-message", "")), reason, metadata)
    return messages


def _error_info(details):
    """(reason, metadata) of the google.rpc.ErrorInfo in a base64 grpc-status-details-bin trailer."""
    if not details:
        return "", {}
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
    for any_ in status.details:
        info = error_details_pb2.ErrorInfo()
        if any_.Unpack(info):
            return info.reason, dict(info.metadata)
    return "", {}


def parse_frames(data: bytes) -> Tuple[List[bytes], dict]:
    messages, trailers, pos = [], {}, 0
    while pos + 5 <= len(data):
        flag, length = struct.unpack(">BI", data[pos:pos + 5])
        payload = data[pos + 5:pos + 5 + length]
        pos += 5 + length
        if flag & 0x80:
            for line in payload.decode("utf-8").split("\r\n"):
                if ":" in line:
                    k, v = line.split(":", 1)
                    trailers[k.strip().lower()] = v.strip()
        else:
            messages.append(payload)
    return messages, trailers
