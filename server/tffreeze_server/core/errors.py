"""Errors of the freeze engine. Each carries the gRPC status *name* it maps to
(the mapping to grpc.StatusCode lives in ``tffreeze_server.status``); messages
name the problem and what to do about it."""


class FreezeError(Exception):
    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


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


class Internal(FreezeError):
    code = "INTERNAL"


BY_CODE = {cls.code: cls for cls in (InvalidArgument, NotFound, FailedPrecondition,
                                      ResourceExhausted, DeadlineExceeded, Cancelled, Internal)}


def from_code(code: str, message: str) -> FreezeError:
    """Rebuild an error sent across a process boundary as (code, message)."""
    return BY_CODE.get(code, Internal)(message)
