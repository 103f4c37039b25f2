"""Errors of the freeze engine: the classes of ``tffreeze_api.errors`` (the registry the
Python client shares), under the engine's short names. Each carries the gRPC status
*name* it maps to, an ErrorReason *name* (protos/tffreeze/v1/errors.proto), string
metadata for the ErrorInfo detail and PreconditionFailure violations; the mapping to
grpc lives in ``tffreeze_server.status``.
Messages name the problem and what to do about it in terms of request fields
and concepts, never one client's flag spelling."""

from __future__ import annotations

import re

from tffreeze_api.errors import (  # noqa: E402 - the one registry, shared with the Python client
    BY_CODE, CancelledError as Cancelled, DataLossError as DataLoss, DeadlineExceededError as DeadlineExceeded,
    FailedPreconditionError as FailedPrecondition, InternalError as Internal, InvalidArgumentError as InvalidArgument,
    NotFoundError as NotFound, ResourceExhaustedError as ResourceExhausted, TffreezeError as FreezeError,
    UnavailableError as Unavailable, Violation)

__all__ = ["BY_CODE", "Cancelled", "DataLoss", "DeadlineExceeded", "FailedPrecondition", "FreezeError", "Internal",
           "InvalidArgument", "NotFound", "ResourceExhausted", "Unavailable", "Violation", "cap_message",
           "without_paths", "option_error"]


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
