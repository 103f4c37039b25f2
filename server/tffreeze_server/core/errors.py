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

    def __reduce__(self):  # crosses the worker pipe with its reason and metadata
        return rebuild, (self.code, self.message, self.reason, self.metadata)


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


def rebuild(code: str, message: str, reason: str, metadata: Dict[str, str]) -> FreezeError:
    """An error sent across a process boundary, as it was."""
    return BY_CODE.get(code, Internal)(message, reason, **metadata)


_DIRS = re.compile(r"(?:/[^\s/'\"]+)+/")


def without_paths(text: str) -> str:
    """A library's message without the server's folders (TensorFlow names the files
    it reads by absolute path): '/srv/data/work/work-x/model.ckpt' -> 'model.ckpt'."""
    return _DIRS.sub("", text)


def option_error(field: str, message: str) -> InvalidArgument:
    """A malformed or inapplicable request option (``field`` as in FreezeOptions)."""
    return InvalidArgument("options.%s: %s" % (field, message), "ERROR_REASON_INVALID_OPTION",
                           field="options." + field)
