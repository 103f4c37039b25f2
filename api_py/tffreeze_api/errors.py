"""The error registry shared by the server and the Python client: one exception class per
gRPC status the service uses, each carrying the ErrorInfo ``reason`` (an ErrorReason name,
protos/tffreeze/v1/errors.proto) and ``metadata``, plus the ``violations`` of a
``google.rpc.PreconditionFailure`` (one per missing blob). The server raises these and turns
them into a rich status (:func:`rich_status`); the client rebuilds the same class from a
status (:func:`from_status`). Branch on ``reason``, never on the message.

Importing this module imports nothing beyond the standard library; the google.rpc messages
are imported by the two functions that need them.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, NamedTuple, Optional, Type

from . import ERROR_DOMAIN

UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"
MAX_VIOLATIONS = 40  # what fits the 8 KiB of trailers gRPC allows by default, with the message


class Violation(NamedTuple):
    """One entry of a google.rpc.PreconditionFailure: e.g. ("MISSING", "blobs/<sha256>/<size>",
    "model.ckpt-100.data-00000-of-00001 is not uploaded")."""

    type: str
    subject: str
    description: str


class TffreezeError(Exception):
    """``code``: the status name; ``reason``: the ErrorReason name; ``metadata``: the
    ErrorInfo's; ``violations``: the PreconditionFailure's. Metadata may be given as a
    dict or as keywords (``field="options.bind"``)."""

    code = "UNKNOWN"

    def __init__(self, message: str, reason: str = UNSPECIFIED, metadata: Optional[Dict[str, str]] = None,
                 violations: Iterable[Violation] = (), **more):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata: Dict[str, str] = {k: str(v) for k, v in dict(metadata or {}, **more).items() if v is not None}
        self.violations: List[Violation] = list(violations)

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(TffreezeError):
    code = "INVALID_ARGUMENT"


class NotFoundError(TffreezeError):
    code = "NOT_FOUND"


class FailedPreconditionError(TffreezeError):
    code = "FAILED_PRECONDITION"


class ResourceExhaustedError(TffreezeError):
    code = "RESOURCE_EXHAUSTED"


class DeadlineExceededError(TffreezeError):
    code = "DEADLINE_EXCEEDED"


class CancelledError(TffreezeError):
    code = "CANCELLED"


class UnavailableError(TffreezeError):
    code = "UNAVAILABLE"


class UnauthenticatedError(TffreezeError):
    code = "UNAUTHENTICATED"


class DataLossError(TffreezeError):
    code = "DATA_LOSS"


class InternalError(TffreezeError):
    code = "INTERNAL"


BY_CODE: Dict[str, Type[TffreezeError]] = {
    c.code: c for c in (InvalidArgumentError, NotFoundError, FailedPreconditionError, ResourceExhaustedError,
                        DeadlineExceededError, CancelledError, UnavailableError, UnauthenticatedError,
                        DataLossError, InternalError)
}


def error_for(code: str, message: str, reason: str = UNSPECIFIED, metadata: Optional[Dict[str, str]] = None,
              violations: Iterable[Violation] = ()) -> TffreezeError:
    """The registry's class for a status name (TffreezeError with that code for others)."""
    cls = BY_CODE.get(code, TffreezeError)
    err = cls(message, reason, metadata, violations)
    if cls is TffreezeError:
        err.code = code
    return err


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 15] + " ... (cut)"


def rich_status(code_number: int, message: str, reason: str = UNSPECIFIED,
                metadata: Optional[Dict[str, str]] = None, violations: Iterable[Violation] = ()) -> bytes:
    """The serialized google.rpc.Status: the ErrorInfo, and a PreconditionFailure when there
    are violations (at most MAX_VIOLATIONS; ErrorInfo metadata "violations" says how many)."""
    from google.rpc import error_details_pb2, status_pb2

    metadata, violations = dict(metadata or {}), list(violations)
    if len(violations) > MAX_VIOLATIONS:
        metadata["violations"] = str(len(violations))
    info = error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN,
                                       metadata={k: _bounded(v, 200) for k, v in list(metadata.items())[:16]})
    status = status_pb2.Status(code=code_number, message=message)
    status.details.add().Pack(info)
    if violations:
        failure = error_details_pb2.PreconditionFailure()
        for v in violations[:MAX_VIOLATIONS]:
            failure.violations.add(type=v.type, subject=_bounded(v.subject, 200),
                                   description=_bounded(v.description, 300))
        status.details.add().Pack(failure)
    return status.SerializeToString()


def from_status(code: str, message: str, details: Optional[bytes]) -> TffreezeError:
    """The registry's error for a status name, message and serialized google.rpc.Status
    (the grpc-status-details-bin trailer): every ErrorInfo and PreconditionFailure in it."""
    reason, metadata, violations = UNSPECIFIED, {}, []
    if details:
        from google.protobuf.message import DecodeError
        from google.rpc import error_details_pb2, status_pb2

        try:
            status = status_pb2.Status.FromString(details)
        except DecodeError:
            status = status_pb2.Status()
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason or reason
                metadata.update(info.metadata)
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                failure = error_details_pb2.PreconditionFailure()
                detail.Unpack(failure)
                violations += [Violation(v.type, v.subject, v.description) for v in failure.violations]
    return error_for(code, message, reason, metadata, violations)


__all__ = ["TffreezeError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError",
           "ResourceExhaustedError", "DeadlineExceededError", "CancelledError", "UnavailableError",
           "UnauthenticatedError", "DataLossError", "InternalError", "BY_CODE", "Violation", "error_for",
           "rich_status", "from_status", "UNSPECIFIED"]
