"""Client exceptions, one per gRPC status the service uses.

Every error raised by :class:`tffreeze.FreezeClient` is a :class:`TffreezeError`
whose ``code`` is the status name ("NOT_FOUND", ...) and whose ``reason`` is
the server's machine-readable ErrorReason name ("ERROR_REASON_BLOBS_MISSING",
see protos/tffreeze/v1/errors.proto), with the ErrorInfo's ``metadata``.
Branch on ``reason``, never on the message. Server errors are raised ``from``
the original ``grpc.RpcError``.
"""

from __future__ import annotations

from typing import Dict, Optional, Type

UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"


class TffreezeError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str, reason: str = UNSPECIFIED, metadata: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.metadata: Dict[str, str] = dict(metadata or {})

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


_BY_CODE: Dict[str, Type[TffreezeError]] = {
    c.code: c for c in (InvalidArgumentError, NotFoundError, FailedPreconditionError, ResourceExhaustedError,
                        DeadlineExceededError, CancelledError, UnavailableError, UnauthenticatedError,
                        DataLossError, InternalError)
}


def error_for(code: str, message: str, reason: str = UNSPECIFIED,
              metadata: Optional[Dict[str, str]] = None) -> TffreezeError:
    cls = _BY_CODE.get(code, TffreezeError)
    err = cls(message, reason, metadata)
    if cls is TffreezeError:
        err.code = code
    return err


def _error_info(exc):
    """The google.rpc.ErrorInfo in a call's rich status, if any."""
    try:
        from google.rpc import error_details_pb2
        from grpc_status import rpc_status
    except ImportError:  # grpcio-status absent: codes and messages only
        return None
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, AttributeError, TypeError):
        return None
    for detail in (status.details if status is not None else []):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def from_rpc_error(exc, target: Optional[str] = None) -> TffreezeError:
    """Translate a grpc.RpcError into the matching TffreezeError, with its reason."""
    code = exc.code().name if hasattr(exc, "code") and exc.code() is not None else "UNKNOWN"
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    info = _error_info(exc)
    reason = info.reason if info is not None and info.reason else UNSPECIFIED
    metadata = dict(info.metadata) if info is not None else {}
    if code == "UNAVAILABLE" and target:
        details = ("cannot reach the tffreeze server at %s (%s). Start one with `tffreeze serve`, or point "
                   "--server / $TFFREEZE_SERVER at a running one." % (target, details))
    return error_for(code, details, reason, metadata)
