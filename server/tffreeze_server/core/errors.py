"""Errors of the freeze engine. Each carries the gRPC status *name* it maps to,
an ErrorReason *name* (protos/tffreeze/v1/errors.proto) and string metadata for
the ErrorInfo detail; the mapping to grpc lives in ``tffreeze_server.status``.
Messages name the problem and what to do about it in terms of request fields
and concepts, never one client's flag spelling."""

from __future__ import annotations

import re
from typing import Dict


class FreezeError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str, reason: str = "ERROR_REASON_INTERNAL", **metadata):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata: Dict[str, str] = {k: str(v) for k, v in metadata.items() if v is not None}


class InvalidArgument(FreezeError):
    code = "INVALID_ARGUMENT"


class NotFound(FreezeError):
    code = "NOT_FOUND"


class FailedPrecondition(FreezeError):
    code = "FAILED_PRECONDITION"


class ResourceExhausted(FreezeError):
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceeded(FreezeError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(FreezeError):
    code = "CANCELLED"


class Unavailable(FreezeError):
    code = "UNAVAILABLE"


class DataLoss(FreezeError):
    code = "DATA_LOSS"


class Internal(FreezeError):
    code = "INTERNAL"


BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, FailedPrecondition,
                                      ResourceExhausted, DeadlineExceeded, Cancelled, DataLoss, Internal)}


MAX_MESSAGE_CHARS = 1024  # every message a client sees; longer ones are cut, naming how much was left out


def cap_message(message: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``message`` cut to about ``limit`` characters, at a list separator when there is one:
    'a, b, c ... and 97 more' (names) or '... (N more characters)'."""
    if len(message) <= limit:
        return message
    head = message[:limit]
    cut = head.rfind(", ")
    if cut > limit // 2:
        items = message[cut + 2:].split(", ")
        return head[:cut] + " ... and %d more" % len(items)
    return head + " ... (%d more characters)" % (len(message) - limit)


_DIRS = re.compile(r"(?:/[^\s/'\"]+)+/")


def without_paths(text: str) -> str:
    """A library's message without the server's folders (TensorFlow names the files
    it reads by absolute path): '/srv/data/work/work-x/model.ckpt' -> 'model.ckpt'."""
    return _DIRS.sub("", text)


def option_error(field: str, message: str) -> InvalidArgument:
    """A malformed or inapplicable request option (``field`` as in FreezeOptions)."""
    return InvalidArgument("options.%s: %s" % (field, message), "ERROR_REASON_INVALID_OPTION",
                           field="options." + field)
