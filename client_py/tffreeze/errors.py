"""Client exceptions, one per gRPC status the service uses.

Every error raised by :class:`tffreeze.FreezeClient` is a :class:`TffreezeError`
whose ``code`` is the status name ("NOT_FOUND", ...); server errors are raised
``from`` the original ``grpc.RpcError``.
"""

from __future__ import annotations

from typing import Dict, Optional, Type


class TffreezeError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

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


class InternalError(TffreezeError):
    code = "INTERNAL"


_BY_CODE: Dict[str, Type[TffreezeError]] = {
    c.code: c for c in (InvalidArgumentError, NotFoundError, FailedPreconditionError, ResourceExhaustedError,
                        DeadlineExceededError, CancelledError, UnavailableError, InternalError)
}


def error_for(code: str, message: str) -> TffreezeError:
    cls = _BY_CODE.get(code, TffreezeError)
    err = cls(message)
    if cls is TffreezeError:
        err.code = code
    return err


def from_rpc_error(exc, target: Optional[str] = None) -> TffreezeError:
    """Translate a grpc.RpcError into the matching TffreezeError."""
    code = exc.code().name if hasattr(exc, "code") and exc.code() is not None else "UNKNOWN"
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code == "UNAVAILABLE" and target:
        details = ("cannot reach the tffreeze server at %s (%s). Start one with `tffreeze serve`, or point "
                   "--server / $TFFREEZE_SERVER at a running one." % (target, details))
    return error_for(code, details)
