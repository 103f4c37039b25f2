"""Client exceptions: ``tffreeze_api.errors``, the registry the server raises from.

Every error raised by :class:`tffreeze.FreezeClient` is a :class:`TffreezeError`
whose ``code`` is the status name ("NOT_FOUND", ...) and whose ``reason`` is
the server's machine-readable ErrorReason name ("ERROR_REASON_BLOBS_MISSING",
see protos/tffreeze/v1/errors.proto), with the ErrorInfo's ``metadata``.
Branch on ``reason``, never on the message. Server errors are raised ``from``
the original ``grpc.RpcError``.
"""

from __future__ import annotations

from typing import Optional

from tffreeze_api.errors import (  # the registry the server raises from
    BY_CODE, UNSPECIFIED, CancelledError, DataLossError, DeadlineExceededError, FailedPreconditionError,
    InternalError, InvalidArgumentError, NotFoundError, ResourceExhaustedError, TffreezeError, UnauthenticatedError,
    UnavailableError, Violation, error_for, from_status)

_DETAILS_KEY = "grpc-status-details-bin"


def _details(exc) -> Optional[bytes]:
    """The serialized google.rpc.Status a call's trailers carry, if any."""
    try:
        trailers = exc.trailing_metadata() or ()
    except (AttributeError, TypeError, ValueError):
        return None
    return next((value for key, value in trailers if key == _DETAILS_KEY), None)


def from_rpc_error(exc, target: Optional[str] = None) -> TffreezeError:
    """Translate a grpc.RpcError into the registry's error, with its reason, metadata and
    violations (every standard detail the server sent)."""
    code = exc.code().name if hasattr(exc, "code") and exc.code() is not None else "UNKNOWN"
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code == "UNAVAILABLE" and target:
        details = ("cannot reach the tffreeze server at %s (%s). Start one with `tffreeze serve`, or point "
                   "--server / $TFFREEZE_SERVER at a running one." % (target, details))
    return from_status(code, details, _details(exc))


__all__ = ["TffreezeError", "InvalidArgumentError", "NotFoundError", "FailedPreconditionError",
           "ResourceExhaustedError", "DeadlineExceededError", "CancelledError", "UnavailableError",
           "UnauthenticatedError", "DataLossError", "InternalError", "BY_CODE", "Violation", "error_for",
           "from_rpc_error", "UNSPECIFIED"]
